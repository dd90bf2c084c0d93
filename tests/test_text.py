"""Text made safe to encode, store and expose: lone surrogates and NUL replaced, fast when clean."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from otel_llm.text import REPLACEMENT_CHARACTER, clean_label_value, clean_text

R = REPLACEMENT_CHARACTER


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gpt-4o\ud800", f"gpt-4o{R}"),
        ("\udfff", R),
        ("a\x00b", f"a{R}b"),
        ("\x00", R),
        # Two surrogates that would form a pair in UTF-16 are still two lone code points here.
        ("\ud83d\ude00", R + R),
        ("modèle \ud800 中文 😀 \x00", f"modèle {R} 中文 😀 {R}"),
    ],
)
def test_lone_surrogates_and_nul_are_replaced(value: str, expected: str) -> None:
    has_surrogate = any("\ud800" <= char <= "\udfff" for char in value)
    with pytest.raises(UnicodeEncodeError) if has_surrogate else nullcontext():
        value.encode("utf-8")  # so the test is about values that need cleaning
    assert clean_text(value) == expected
    expected.encode("utf-8")


@pytest.mark.parametrize(
    "value",
    ["", "gpt-4o", "claude-3-5-sonnet-20241022", "modèle 中文 😀", "tab\tnew\nline\r", "\x1b[31m"],
)
def test_clean_text_is_returned_as_the_same_object(value: str) -> None:
    # Other control characters stay: JSON and OTLP carry them, and a prompt may hold them.
    assert clean_text(value) is value


_MESSY = st.lists(
    st.one_of(
        st.characters(),
        st.integers(0xD800, 0xDFFF).map(chr),
        st.sampled_from("\x00\x01\t\n\r\x1f\x7f\ufffd"),
    ),
    max_size=40,
).map("".join)


@given(_MESSY)
def test_any_text_comes_out_encodable_and_the_same_length(value: str) -> None:
    cleaned = clean_text(value)
    cleaned.encode("utf-8")
    assert "\x00" not in cleaned
    assert len(cleaned) == len(value)
    for before, after in zip(value, cleaned, strict=True):
        assert after == (R if before == "\x00" or "\ud800" <= before <= "\udfff" else before)


@given(_MESSY, st.integers(0, 50))
def test_any_label_value_comes_out_short_printable_and_encodable(value: str, limit: int) -> None:
    cleaned = clean_label_value(value, limit)
    cleaned.encode("utf-8")
    assert len(cleaned) == min(len(value), limit)
    assert not any(char < " " or char == "\x7f" for char in cleaned)
    for before, after in zip(value, cleaned, strict=False):
        unsafe = before < " " or before == "\x7f" or "\ud800" <= before <= "\udfff"
        assert after == (R if unsafe else before)


@pytest.mark.parametrize(
    ("value", "max_length", "expected"),
    [
        ("gpt-4o\ud800", 200, f"gpt-4o{R}"),
        ("a\x00b", 200, f"a{R}b"),
        ("line\nbreak\ttab\x7f", 200, f"line{R}break{R}tab{R}"),
        ("x" * 300, 200, "x" * 200),
        ("abc\ud800", 3, "abc"),  # cut before the unsafe character
        ("abc", 0, ""),
        ("abc", -5, ""),
    ],
)
def test_label_values(value: str, max_length: int, expected: str) -> None:
    assert clean_label_value(value, max_length) == expected


@pytest.mark.parametrize("value", ["", "gpt-4o", "modèle 中文 😀", "a b"])
def test_clean_label_value_is_returned_as_the_same_object(value: str) -> None:
    assert clean_label_value(value, 200) is value


def _best_nanoseconds(call: Callable[[], object]) -> float:
    """CPU nanoseconds per call, the best of seven rounds (CPU time: the machine may be busy)."""
    calls = 20_000
    best = float("inf")
    for _ in range(7):
        start = time.process_time()
        for _ in range(calls):
            call()
        best = min(best, (time.process_time() - start) / calls * 1e9)
    return best


def test_the_common_case_is_fast() -> None:
    value = "gpt-4o-mini-20240718"  # 20 ASCII characters, nothing to clean
    assert len(value) == 20
    text_ns = _best_nanoseconds(lambda: clean_text(value))
    label_ns = _best_nanoseconds(lambda: clean_label_value(value, 200))
    print(f"clean_text {text_ns:.0f} ns, clean_label_value {label_ns:.0f} ns (20 ASCII chars)")
    # About 100 ns on an idle machine, the lambda's call included.
    assert text_ns < 1000
    assert label_ns < 1000


# --- exposition --------------------------------------------------------------------------------

POISON = ["gpt-4o\ud800", "a\x00b", "\udfff"]


def _registry(label_values: list[str]) -> CollectorRegistry:
    registry = CollectorRegistry()
    calls = Counter("llm_calls", "Calls.", ["model"], registry=registry)
    for value in label_values:
        calls.labels(model=value).inc()
    return registry


def test_raw_values_poison_the_exposition() -> None:
    # What the sanitising prevents, so the test below can fail: surrogates make both
    # encoders raise, a NUL is written out as a raw 0 byte.
    for value in ("gpt-4o\ud800", "\udfff"):
        with pytest.raises(UnicodeEncodeError):
            generate_latest(_registry([value]))
        with pytest.raises(UnicodeEncodeError):
            openmetrics.generate_latest(_registry([value]))
    assert b"\x00" in generate_latest(_registry(["a\x00b"]))


def test_cleaned_values_render_and_parse_back() -> None:
    cleaned = [clean_label_value(value, 200) for value in POISON]
    assert cleaned == [f"gpt-4o{R}", f"a{R}b", R]
    registry = _registry(cleaned)

    text = generate_latest(registry)
    assert b"\x00" not in text
    models = {
        sample.labels["model"]
        for family in parse_prometheus(text.decode("utf-8"))
        for sample in family.samples
    }
    assert models == set(cleaned)

    text = openmetrics.generate_latest(registry)
    assert b"\x00" not in text
    models = {
        sample.labels["model"]
        for family in parse_openmetrics(text.decode("utf-8"))
        for sample in family.samples
    }
    assert models == set(cleaned)
