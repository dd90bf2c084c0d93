"""PrometheusRecorder's accumulators as a prometheus_client collector: exact sums under
concurrent calls and scrapes, and the registry behaviour its metric objects used to give
(duplicate names refused, ``?name[]=`` restriction, label names checked)."""

from __future__ import annotations

import math
import sys
import threading
from bisect import bisect_left
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from otel_llm import _semconv as sc
from otel_llm.derive import Derived, derive
from otel_llm.metrics.prometheus import (
    _TOKEN_BOUNDS,
    _TOKEN_SLOTS,
    PrometheusRecorder,
    _count_slots,
)
from otel_llm.pricing import PriceBook
from tests.support.pipeline import chat_labels

T0 = 1_760_000_000_000_000_000


def _call(model: str = "gpt-4o-mini", input_tokens: int = 100) -> Derived:
    derived = derive(
        {
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_REQUEST_MODEL: model,
            sc.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 7,
        },
        start_time_ns=T0,
        end_time_ns=T0 + 250_000_000,
        failed=False,
        service_name="svc",
        trace_id=42,
        book=PriceBook(),
        max_tokens=10**8,
    )
    assert derived is not None
    return derived


def _labels(**extra: str) -> dict[str, str]:
    return chat_labels(service_name="svc", **extra)


@pytest.fixture
def busy_switching() -> Iterator[None]:
    # Threads switch every microsecond: an update that is not atomic loses increments.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("busy_switching")
def test_concurrent_calls_add_up_exactly() -> None:
    registry = CollectorRegistry()
    recorder = PrometheusRecorder(registry)
    derived = _call()
    threads, calls = 4, 5_000

    def work() -> None:
        for _ in range(calls):
            recorder.record(derived)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    total = threads * calls
    assert registry.get_sample_value(sc.PROM_DURATION + "_count", _labels()) == total
    assert registry.get_sample_value(sc.PROM_TOKENS, _labels(gen_ai_token_type="input")) == float(
        100 * total
    )
    assert registry.get_sample_value(
        sc.PROM_TOKEN_USAGE + "_bucket", _labels(gen_ai_token_type="output", le="16.0")
    ) == float(total)


def test_scrapes_during_calls_that_make_new_series() -> None:
    # A scrape iterates the series while calls add more: it must render a consistent copy.
    registry = CollectorRegistry()
    recorder = PrometheusRecorder(registry, max_label_values=10_000)
    calls = [_call(f"m-{index}") for index in range(1_500)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    failures: list[BaseException] = []
    scrapes = 0

    def work() -> None:
        for derived in calls:
            recorder.record(derived)

    worker = threading.Thread(target=work)
    try:
        worker.start()
        while worker.is_alive():
            try:
                list(registry.collect())
            except Exception as exc:  # noqa: BLE001 - collected to assert on below
                failures.append(exc)
            scrapes += 1
    finally:
        worker.join()
        sys.setswitchinterval(interval)
    assert failures == []
    assert scrapes > 1
    models = {
        sample.labels["gen_ai_request_model"]
        for family in registry.collect()
        if family.name == sc.PROM_DURATION
        for sample in family.samples
    }
    assert len(models) == len(calls)


def test_a_duplicate_name_is_refused_as_before() -> None:
    registry = CollectorRegistry()
    PrometheusRecorder(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter(sc.PROM_COST.removesuffix("_total"), "mine", registry=registry)
    other = CollectorRegistry()
    Counter(sc.PROM_TOKENS.removesuffix("_total"), "mine", registry=other)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusRecorder(other)


def test_a_restricted_registry_exposes_only_the_names_asked_for() -> None:
    registry = CollectorRegistry()
    PrometheusRecorder(registry).record(_call())
    body = generate_latest(registry.restricted_registry([sc.PROM_COST])).decode()
    assert f"{sc.PROM_COST}{{" in body
    assert sc.PROM_DURATION not in body
    assert sc.PROM_TOKENS not in body


@pytest.mark.parametrize("label", ["le", "__reserved"])
def test_an_unusable_extra_label_name_fails_at_construction(label: str) -> None:
    # Refused by prometheus_client as before: "le" is the histograms' bucket label, "__" is
    # reserved.
    with pytest.raises(ValueError, match="Reserved label"):
        PrometheusRecorder(CollectorRegistry(), extra_labels={label: "app.x"})


def test_a_stage_can_exist_at_zero() -> None:
    registry = CollectorRegistry()
    recorder = PrometheusRecorder(registry)
    recorder.record_error("collector", 0)
    assert registry.get_sample_value(sc.PROM_PROCESSOR_ERRORS, {"stage": "collector"}) == 0
    recorder.record_error("collector")
    assert registry.get_sample_value(sc.PROM_PROCESSOR_ERRORS, {"stage": "collector"}) == 1


def test_a_token_count_falls_in_the_bucket_bisect_left_picks() -> None:
    """Token counts are bucketed by the bit length of ``n - 1`` (``_count_slots``): the same
    bucket as prometheus_client's bisect over the bounds, at and around every bound."""
    counts = {*range(5_000), 2**1023, 2**1024}
    for bound in sc.TOKEN_BUCKETS:
        counts.update((bound - 1, bound, bound + 1, 2 * bound, 3 * bound))
    for n in sorted(counts):
        assert _TOKEN_SLOTS[((n or 1) - 1).bit_length()] == bisect_left(_TOKEN_BOUNDS, n), n


def test_bucket_bounds_that_are_not_powers_of_two_are_refused() -> None:
    assert _count_slots((1.0, 2.0, 8.0, math.inf))[:5] == (0, 1, 2, 2, 3)
    with pytest.raises(ValueError, match="power of two"):
        _count_slots((1.0, 3.0, math.inf))
