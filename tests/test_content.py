"""Content capture: off by default, the conventions' JSON shape, bounded size, redaction."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm._semconv import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_SYSTEM_INSTRUCTIONS,
)
from otel_llm.instrumentation.content import (
    REDACTED,
    REDACTION_FAILED,
    ContentCapture,
    Message,
    Part,
    message,
    redact_secrets,
    text_message,
    text_part,
    tool_call_part,
    tool_call_response_part,
)

CONTENT_ATTRIBUTES = (GEN_AI_INPUT_MESSAGES, GEN_AI_OUTPUT_MESSAGES, GEN_AI_SYSTEM_INSTRUCTIONS)
ENV_VARS = (
    "OTEL_LLM_CAPTURE_CONTENT",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "OTEL_LLM_CONTENT_MAX_LENGTH",
)


class Spans:
    """A real SDK TracerProvider exporting into memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def record(self, capture: ContentCapture, **content: Any) -> dict[str, Any]:
        """Records ``content`` on a fresh span and returns the finished span's attributes."""
        self.exporter.clear()
        with self.provider.get_tracer("test").start_as_current_span("chat m") as span:
            capture.record(span, **content)
        (finished,) = self.exporter.get_finished_spans()
        return dict(finished.attributes or {})


@pytest.fixture
def spans() -> Iterator[Spans]:
    result = Spans()
    yield result
    result.provider.shutdown()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


CONVERSATION: list[Message] = [
    text_message("user", "What is the weather in Paris?"),
    message("assistant", [tool_call_part("call_1", "get_weather", {"city": "Paris"})]),
    message("tool", [tool_call_response_part("call_1", "rainy, 57°F")]),
]
ANSWER: list[Message] = [text_message("assistant", "It is rainy.", finish_reason="stop")]
SYSTEM: list[Part] = [text_part("You are a weather bot.")]


def _record_all(spans: Spans, capture: ContentCapture) -> dict[str, Any]:
    return spans.record(
        capture,
        input_messages=CONVERSATION,
        output_messages=ANSWER,
        system_instructions=SYSTEM,
    )


# --- on and off -------------------------------------------------------------------------------


def test_off_by_default(spans: Spans) -> None:
    capture = ContentCapture()
    assert capture.enabled is False
    attributes = _record_all(spans, capture)
    assert not set(CONTENT_ATTRIBUTES) & set(attributes)


def test_on_by_argument(spans: Spans) -> None:
    capture = ContentCapture(enabled=True)
    assert capture.enabled is True
    assert capture.max_length == 4096
    attributes = _record_all(spans, capture)
    assert set(CONTENT_ATTRIBUTES) <= set(attributes)


@pytest.mark.parametrize(
    ("variable", "value", "enabled"),
    [
        ("OTEL_LLM_CAPTURE_CONTENT", "true", True),
        ("OTEL_LLM_CAPTURE_CONTENT", "1", True),
        ("OTEL_LLM_CAPTURE_CONTENT", "false", False),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true", True),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY", True),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_and_event", True),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "NO_CONTENT", False),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "EVENT_ONLY", False),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "false", False),
        ("OTEL_LLM_CAPTURE_CONTENT", "not-a-bool", False),
    ],
)
def test_on_and_off_by_environment(
    spans: Spans, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, enabled: bool
) -> None:
    monkeypatch.setenv(variable, value)
    capture = ContentCapture()
    assert capture.enabled is enabled
    attributes = _record_all(spans, capture)
    assert (GEN_AI_INPUT_MESSAGES in attributes) is enabled


def test_argument_beats_environment_and_otel_llm_beats_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_LLM_CAPTURE_CONTENT", "true")
    assert ContentCapture(enabled=False).enabled is False
    monkeypatch.setenv("OTEL_LLM_CAPTURE_CONTENT", "false")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    assert ContentCapture().enabled is False


def test_max_length_from_environment_and_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_CONTENT_MAX_LENGTH", "100")
    assert ContentCapture().max_length == 100
    assert ContentCapture(max_length=50).max_length == 50
    assert ContentCapture(max_length=0).max_length == 100  # invalid argument: next source


def test_nothing_for_absent_or_empty_lists_and_non_recording_spans(spans: Spans) -> None:
    capture = ContentCapture(enabled=True)
    attributes = spans.record(capture, input_messages=[], output_messages=None)
    assert not set(CONTENT_ATTRIBUTES) & set(attributes)
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("x") as span:
        span.end()
        capture.record(span, input_messages=CONVERSATION)  # ended: not recording, no error


# --- shape -----------------------------------------------------------------------------------


def test_json_shape_follows_the_conventions(spans: Spans) -> None:
    attributes = _record_all(spans, ContentCapture(enabled=True))
    assert json.loads(attributes[GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is the weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "get_weather",
                    "arguments": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy, 57°F"}],
        },
    ]
    assert json.loads(attributes[GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "It is rainy."}],
            "finish_reason": "stop",
        }
    ]
    assert json.loads(attributes[GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "You are a weather bot."}
    ]
    assert "57°F" in attributes[GEN_AI_INPUT_MESSAGES]  # not \u-escaped: characters count once


def test_helpers() -> None:
    assert text_message("user", "hi") == {
        "role": "user",
        "parts": [{"type": "text", "content": "hi"}],
    }
    assert text_message("assistant", "ok", finish_reason="length")["finish_reason"] == "length"
    assert "finish_reason" not in text_message("user", "hi")


def test_input_is_not_modified(spans: Spans) -> None:
    messages = [
        text_message("user", "key sk-proj-Abc123def456ghi789jkl012 " + "x" * 5000),
        message("assistant", [tool_call_part("c", "f", {"password": "p", "q": "y" * 5000})]),
    ]
    before = copy.deepcopy(messages)
    spans.record(ContentCapture(enabled=True, max_length=300), input_messages=messages)
    assert messages == before


def test_odd_values_still_give_valid_json(spans: Spans) -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    messages: list[Any] = [
        {"role": "user", "parts": [{"type": "text", "content": Thing()}, "bare string"]},
        {"role": "assistant", "parts": [{"type": "x", "value": float("nan"), "n": (1, 2)}]},
        {"role": "user"},
        "not a message",
        {"role": "user", "parts": [{"type": "text", "content": "lone \ud800 surrogate"}]},
    ]
    text = spans.record(ContentCapture(enabled=True), input_messages=messages)[
        GEN_AI_INPUT_MESSAGES
    ]
    text.encode("utf-8")  # exporters need valid UTF-8
    decoded = json.loads(text)
    assert decoded[0]["parts"] == [
        {"type": "text", "content": "a thing"},
        {"type": "text", "content": "bare string"},
    ]
    assert decoded[1]["parts"][0] == {"type": "x", "value": "nan", "n": [1, 2]}
    assert decoded[2] == {"role": "user", "parts": []}


def test_fields_outside_the_shape_are_redacted_and_bare_strings_are_one_text(
    spans: Spans,
) -> None:
    messages: list[Any] = [{"role": "user", "content": f"key {OPENAI_KEY}", "name": "bob"}]
    attributes = spans.record(
        ContentCapture(enabled=True),
        input_messages=messages,
        output_messages="plain answer",
        system_instructions="be nice",
    )
    assert json.loads(attributes[GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "content": f"key {REDACTED}", "name": "bob", "parts": []}
    ]
    assert json.loads(attributes[GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "plain answer"}]}
    ]
    assert json.loads(attributes[GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "be nice"}
    ]


def test_never_raises() -> None:
    class BrokenSpan:
        def is_recording(self) -> bool:
            return True

        def set_attribute(self, key: str, value: Any) -> None:
            raise RuntimeError("exporter on fire")

    capture = ContentCapture(enabled=True)
    capture.record(BrokenSpan(), input_messages=CONVERSATION)  # type: ignore[arg-type]
    capture.record(None, input_messages=CONVERSATION)  # type: ignore[arg-type]


# --- truncation ------------------------------------------------------------------------------


def _fits(text: str | None, max_length: int) -> Any:
    assert text is not None
    assert len(text) <= max_length
    return json.loads(text)


def test_response_preview_keeps_the_start(spans: Spans) -> None:
    response = "BEGIN " + "word " * 2000
    text = spans.record(
        ContentCapture(enabled=True, max_length=200),
        output_messages=[text_message("assistant", response, finish_reason="length")],
    )[GEN_AI_OUTPUT_MESSAGES]
    (out,) = _fits(text, 200)
    assert out["finish_reason"] == "length"
    content = out["parts"][0]["content"]
    kept, _, marker = content.partition("…[truncated ")
    assert response.startswith(kept)
    assert kept.startswith("BEGIN word")
    assert marker == f"{len(response) - len(kept)} chars]"


def test_short_texts_stay_whole_while_a_long_one_is_cut(spans: Spans) -> None:
    messages = [
        text_message("system", "S" * 10_000),
        text_message("user", "What is 2+2?"),
        text_message("assistant", "A" * 10_000),
        text_message("user", "And 3+3?"),
    ]
    text = spans.record(ContentCapture(enabled=True, max_length=600), input_messages=messages)[
        GEN_AI_INPUT_MESSAGES
    ]
    out = _fits(text, 600)
    contents = [m["parts"][0]["content"] for m in out]
    assert contents[1] == "What is 2+2?"
    assert contents[3] == "And 3+3?"
    assert contents[0].startswith("SSS")
    assert "…[truncated" in contents[0]
    assert contents[2].startswith("AAA")
    assert "…[truncated" in contents[2]
    assert abs(len(contents[0]) - len(contents[2])) <= 2  # the budget is shared fairly
    assert len(text) >= 590  # and used


def test_escaped_characters_count_as_escaped(spans: Spans) -> None:
    for nasty in ('"' * 3000, "\\" * 3000, "\x00\x01" * 1500, "\n" * 3000, "中😀" * 1500):
        capture = ContentCapture(enabled=True, max_length=150)
        text = spans.record(capture, input_messages=[text_message("user", nasty)])
        _fits(text[GEN_AI_INPUT_MESSAGES], 150)


def test_structured_arguments_stay_structured_until_they_must_be_cut(spans: Spans) -> None:
    small = [message("assistant", [tool_call_part("c", "f", {"city": "Paris"})])]
    big = [message("assistant", [tool_call_part("c", "f", {"city": "Paris", "x": "y" * 5000})])]
    capture = ContentCapture(enabled=True, max_length=300)
    out = _fits(spans.record(capture, output_messages=small)[GEN_AI_OUTPUT_MESSAGES], 300)
    assert out[0]["parts"][0]["arguments"] == {"city": "Paris"}
    out = _fits(spans.record(capture, output_messages=big)[GEN_AI_OUTPUT_MESSAGES], 300)
    arguments = out[0]["parts"][0]["arguments"]
    assert isinstance(arguments, str)
    assert arguments.startswith('{"city":"Paris","x":"yyy')
    assert "…[truncated " in arguments


def test_trailing_parts_and_messages_are_dropped_and_said_so(spans: Spans) -> None:
    messages = [text_message("user", f"message {i}") for i in range(200)]
    capture = ContentCapture(enabled=True, max_length=1000)
    out = _fits(spans.record(capture, input_messages=messages)[GEN_AI_INPUT_MESSAGES], 1000)
    assert out[0] == messages[0]
    kept = len(out)
    assert out[-1]["parts"][-1]["content"] == f"…[truncated: {200 - kept} messages omitted]"

    many_parts = [message("user", [text_part(f"p{i}") for i in range(100)])]
    out = _fits(spans.record(capture, input_messages=many_parts)[GEN_AI_INPUT_MESSAGES], 1000)
    (only,) = out
    marker = only["parts"][-1]["content"]
    assert marker == f"…[truncated: {100 - (len(only['parts']) - 1)} parts omitted]"

    system = [text_part(f"rule {i}") for i in range(100)]
    parts = _fits(
        spans.record(capture, system_instructions=system)[GEN_AI_SYSTEM_INSTRUCTIONS], 1000
    )
    assert parts[0] == system[0]
    assert parts[-1]["content"] == f"…[truncated: {100 - (len(parts) - 1)} parts omitted]"


@pytest.mark.parametrize("max_length", [1, 2, 10, 50, 80, 120, 200])
def test_tiny_budgets(spans: Spans, max_length: int) -> None:
    messages = [text_message("user", "hello " * 100) for _ in range(5)]
    attributes = spans.record(
        ContentCapture(enabled=True, max_length=max_length),
        input_messages=messages,
        system_instructions=[text_part("be brief " * 50)],
    )
    if max_length < 2:
        assert GEN_AI_INPUT_MESSAGES not in attributes
        return
    out = _fits(attributes[GEN_AI_INPUT_MESSAGES], max_length)
    assert isinstance(out, list)
    assert isinstance(_fits(attributes[GEN_AI_SYSTEM_INSTRUCTIONS], max_length), list)


# --- redaction -------------------------------------------------------------------------------

OPENAI_KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4"
OPENAI_PROJECT_KEY = "sk-proj-" + "Qw3rTy7uIo9pAs2dFg4hJk6lZx8cVb1nM0_-Pq5wE7rT9yU2iO4pA6sD8fG0hJ1"
ANTHROPIC_KEY = "sk-ant-api03-" + "Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2Pa1Sd0Fg-Hj_Kl9ZxCv8Bn7Mq6AA"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp_" + "R2d2C3poBb8Yoda4Luke5Leia6Han7Solo8Chew"
GITHUB_PAT = "github_pat_" + "11ABCDEFG0" + "Zq8Xv2Lp0Kd7Wm4Rt6Yh1Nc3Bv5_Gx9Jk2Lm4Np6Qr8St0Uv2"
GOOGLE_KEY = "AIza" + "SyD3x4mPl3K3yF0rT3st1ngPurp0s3sX9zQ"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
BEARER_TOKEN = "Zq8Xv2Lp0Kd7Wm4Rt6Yh.Nc3Bv5Gx9Jk2"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {OPENAI_KEY} end", f"key {REDACTED} end"),
        (f"OPENAI_API_KEY={OPENAI_PROJECT_KEY}", f"OPENAI_API_KEY={REDACTED}"),
        (f"x-api-key: {ANTHROPIC_KEY}\n", f"x-api-key: {REDACTED}\n"),
        (f"aws_access_key_id {AWS_KEY_ID}.", f"aws_access_key_id {REDACTED}."),
        ("temporary ASIAY34FZKBOKMUTVV7A ok", f"temporary {REDACTED} ok"),
        (f"token {GITHUB_TOKEN}!", f"token {REDACTED}!"),
        (f"pat {GITHUB_PAT}", f"pat {REDACTED}"),
        (f"maps ({GOOGLE_KEY})", f"maps ({REDACTED})"),
        (f"jwt {JWT} end", f"jwt {REDACTED} end"),
        (f"Authorization: Bearer {BEARER_TOKEN}", f"Authorization: Bearer {REDACTED}"),
        (f"authorization: bearer {BEARER_TOKEN}==", f"authorization: bearer {REDACTED}"),
        (f"Authorization: Bearer {JWT}", f"Authorization: Bearer {REDACTED}"),
        ("api_key=abc123&user=bob", f"api_key={REDACTED}&user=bob"),
        ("https://x.test/v1?apikey=abc123", f"https://x.test/v1?apikey={REDACTED}"),
        ('{"api_key": "abc 123", "n": 1}', f'{{"api_key": "{REDACTED}", "n": 1}}'),
        ("{'API-KEY': 'abc'}", f"{{'API-KEY': '{REDACTED}'}}"),
        ('{\\"password\\": \\"p w\\"}', f'{{\\"password\\": \\"{REDACTED}\\"}}'),
        ("password=hunter2 and more", f"password={REDACTED} and more"),
        ("DB_PASSWORD: s3cr3t!", f"DB_PASSWORD: {REDACTED}"),
        ("client_secret='a b c'", f"client_secret='{REDACTED}'"),
        ("access_token=ya29.a0AfH6SMB", f"access_token={REDACTED}"),
        (f"pem {PEM} after", f"pem {REDACTED} after"),
        (PEM[:120], REDACTED),  # a key cut before its END line
        (
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5"
            "\n\nabcDEF123+/=\n-----END RSA PRIVATE KEY----- after",
            f"{REDACTED} after",
        ),
    ],
)
def test_each_built_in_redaction(text: str, expected: str) -> None:
    assert redact_secrets(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "We use a desk-reservation-system for planning.",
        "Ask-me-anything sessions, risk-assessment-and-planning",
        "max_tokens=100, passwords: are they safe? The password must be long.",
        "He was the bearer of bad news.",
        "AKIA is a prefix; eyJ too; sk- alone.",
        "tokens: 12, token_count=3",
    ],
)
def test_ordinary_text_is_not_redacted(text: str) -> None:
    assert redact_secrets(text) == text


def test_structured_values_are_redacted_by_key_and_by_content(spans: Spans) -> None:
    arguments = {
        "city": "Paris",
        "api_key": "plain-looking",
        "headers": {"Authorization": "Basic dXNlcjpwYXNz", "X-Trace": "1"},
        "note": f"use {OPENAI_KEY}",
        "password": None,
        "items": [f"Bearer {BEARER_TOKEN}"],
    }
    messages = [message("assistant", [tool_call_part("c", "f", arguments)])]
    out = json.loads(
        spans.record(ContentCapture(enabled=True), output_messages=messages)[GEN_AI_OUTPUT_MESSAGES]
    )
    assert out[0]["parts"][0]["arguments"] == {
        "city": "Paris",
        "api_key": REDACTED,
        "headers": {"Authorization": REDACTED, "X-Trace": "1"},
        "note": f"use {REDACTED}",
        "password": None,
        "items": [f"Bearer {REDACTED}"],
    }


def test_secret_cut_at_the_boundary_is_still_redacted(spans: Spans) -> None:
    for cut in range(60, 140):
        text = "x" * 40 + OPENAI_PROJECT_KEY + " tail"
        capture = ContentCapture(enabled=True, max_length=cut)
        attributes = spans.record(capture, input_messages=[text_message("user", text)])
        out = attributes.get(GEN_AI_INPUT_MESSAGES, "")
        assert "sk-proj" not in out
        assert OPENAI_PROJECT_KEY[8:16] not in out


# --- the user's hook -------------------------------------------------------------------------


def test_hook_runs_after_built_in_redaction_on_each_text(spans: Spans) -> None:
    seen: list[str] = []

    def hook(text: str) -> str:
        seen.append(text)
        return text.replace("Alice Liddell", "<name>")

    messages = [
        text_message("user", f"mail Alice Liddell with {OPENAI_KEY}"),
        message("assistant", [tool_call_part("id_1", "send", {"to": "Alice Liddell"})]),
        message("tool", [tool_call_response_part("id_1", "sent to Alice Liddell")]),
    ]
    attributes = spans.record(
        ContentCapture(enabled=True, redact=hook),
        input_messages=messages,
        system_instructions=[text_part("never mail Alice Liddell")],
    )
    text = attributes[GEN_AI_INPUT_MESSAGES]
    assert "Alice Liddell" not in text
    assert "Alice Liddell" not in attributes[GEN_AI_SYSTEM_INSTRUCTIONS]
    out = json.loads(text)
    assert out[0]["parts"][0]["content"] == f"mail <name> with {REDACTED}"
    assert out[1]["parts"][0] == {
        "type": "tool_call",
        "id": "id_1",
        "name": "send",
        "arguments": {"to": "<name>"},
    }
    assert out[2]["parts"][0]["response"] == "sent to <name>"
    assert all(OPENAI_KEY not in item for item in seen)  # the hook never sees the secret
    assert "id_1" not in seen
    assert "send" not in seen


def test_hook_runs_before_truncation(spans: Spans) -> None:
    def hook(text: str) -> str:
        return text.replace("SECRETWORD", "[name]")

    text = "a" * 70 + "SECRETWORD" + "b" * 1000
    for max_length in range(80, 140):
        capture = ContentCapture(enabled=True, max_length=max_length, redact=hook)
        attributes = spans.record(capture, input_messages=[text_message("user", text)])
        out = attributes.get(GEN_AI_INPUT_MESSAGES, "")
        assert "SECRET" not in out


@pytest.mark.parametrize(
    "hook",
    [
        lambda text: 1 / 0,
        lambda text: None,
    ],
    ids=["raises", "returns-none"],
)
def test_failing_hook_hides_the_text_and_is_logged(
    spans: Spans, caplog: pytest.LogCaptureFixture, hook: Callable[[str], Any]
) -> None:
    capture = ContentCapture(enabled=True, redact=hook)
    with caplog.at_level(logging.DEBUG, logger="otel_llm"):
        attributes = _record_all(spans, capture)
        _record_all(spans, capture)
    out = json.loads(attributes[GEN_AI_INPUT_MESSAGES])
    assert out[0]["parts"][0]["content"] == REDACTION_FAILED
    assert out[1]["parts"][0]["arguments"] == {"city": REDACTION_FAILED}
    assert out[2]["parts"][0]["response"] == REDACTION_FAILED
    assert json.loads(attributes[GEN_AI_OUTPUT_MESSAGES])[0]["parts"][0]["content"] == (
        REDACTION_FAILED
    )
    assert "Paris" not in attributes[GEN_AI_INPUT_MESSAGES]
    failures = [r for r in caplog.records if "redact hook failed" in r.getMessage()]
    assert failures
    assert [r.levelno for r in failures].count(logging.WARNING) == 1  # then debug only


# --- property: any messages, any budget --------------------------------------------------------

# Text around secrets: no capital letters, "-", "_", "=", ":" or "b" -- so it can neither form a
# secret pattern itself nor contain a piece of one of the SECRETS below.
SAFE_ALPHABET = "acdefghijklmnopqrstuvwxyz0123456789 .,!?\n\t\"\\/()'é中😀\x00\x1f"
SECRETS: list[tuple[str, str]] = [  # (text as written, the part that must not survive)
    (OPENAI_KEY, OPENAI_KEY),
    (OPENAI_PROJECT_KEY, OPENAI_PROJECT_KEY),
    (ANTHROPIC_KEY, ANTHROPIC_KEY),
    (AWS_KEY_ID, AWS_KEY_ID),
    (GITHUB_TOKEN, GITHUB_TOKEN),
    (GITHUB_PAT, GITHUB_PAT),
    (GOOGLE_KEY, GOOGLE_KEY),
    (JWT, JWT),
    (f"Bearer {BEARER_TOKEN}", BEARER_TOKEN),
    ("api_key=Qv7Lm2Xp9Rt4Zw", "Qv7Lm2Xp9Rt4Zw"),
    ('"password": "Hx8#Kd2!Wq7$"', "Hx8#Kd2!Wq7$"),
]
SEPARATORS = [" ", "\n", "\t", ".", ",", '"', "'", "(", ")", ";", "\\"]


def _pieces(secret: str) -> list[str]:
    """Eight-character pieces of ``secret`` that safe text can never contain."""
    return [
        secret[i : i + 8]
        for i in range(len(secret) - 7)
        if any(char not in SAFE_ALPHABET for char in secret[i : i + 8])
    ]


def test_every_secret_piece_is_distinctive() -> None:
    for _, secret in SECRETS:
        assert len(_pieces(secret)) >= len(secret) - 8


safe_text = st.one_of(
    st.text(alphabet=SAFE_ALPHABET, max_size=200),
    st.builds(  # long texts, cheaply
        lambda text, times: text * times,
        st.text(alphabet=SAFE_ALPHABET, min_size=1, max_size=50),
        st.integers(10, 200),
    ),
)
texts = st.one_of(
    safe_text,
    st.builds(
        lambda before, left, secret, right, after: before + left + secret[0] + right + after,
        safe_text,
        st.sampled_from(SEPARATORS),
        st.sampled_from(SECRETS),
        st.sampled_from(SEPARATORS),
        safe_text,
    ),
)
structured = st.dictionaries(
    st.sampled_from(["q", "city", "api_key", "body", "password"]),
    st.one_of(texts, st.integers(), st.none(), st.lists(texts, max_size=3)),
    max_size=4,
)
ids = st.text(alphabet="acdef0123456789", max_size=12)
parts = st.one_of(
    st.builds(text_part, texts),
    st.builds(tool_call_part, ids, ids, st.one_of(texts, structured)),
    st.builds(tool_call_response_part, ids, st.one_of(texts, structured)),
)
messages = st.lists(
    st.builds(
        message,
        st.sampled_from(["user", "assistant", "system", "tool"]),
        st.lists(parts, max_size=4),
        st.one_of(st.none(), st.sampled_from(["stop", "length", "tool_call"])),
    ),
    max_size=6,
)
budgets = st.one_of(st.integers(1, 3000), st.sampled_from([4096, 100_000]))

_PROPERTY_SPANS = Spans()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    input_messages=messages,
    output_messages=messages,
    system=st.lists(parts, max_size=4),
    max_length=budgets,
)
def test_any_content_gives_bounded_valid_redacted_json(
    input_messages: list[Message],
    output_messages: list[Message],
    system: list[Part],
    max_length: int,
) -> None:
    capture = ContentCapture(enabled=True, max_length=max_length)
    attributes = _PROPERTY_SPANS.record(
        capture,
        input_messages=input_messages,
        output_messages=output_messages,
        system_instructions=system,
    )
    for attribute, given_items in (
        (GEN_AI_INPUT_MESSAGES, input_messages),
        (GEN_AI_OUTPUT_MESSAGES, output_messages),
        (GEN_AI_SYSTEM_INSTRUCTIONS, system),
    ):
        if not given_items:
            assert attribute not in attributes
            continue
        if max_length < 2:
            assert attribute not in attributes
            continue
        text = attributes[attribute]
        assert len(text) <= max_length
        decoded = json.loads(text)
        assert isinstance(decoded, list)
        if attribute != GEN_AI_SYSTEM_INSTRUCTIONS:
            assert all(isinstance(m, dict) and isinstance(m["parts"], list) for m in decoded)
        for _, secret in SECRETS:
            for piece in _pieces(secret):
                assert piece not in text, (secret, piece)


@settings(max_examples=150, deadline=None)
@given(
    input_messages=st.lists(
        st.builds(
            message,
            st.sampled_from(["user", "assistant"]),
            st.lists(
                st.one_of(
                    st.builds(text_part, safe_text),
                    st.builds(
                        tool_call_part, ids, ids, st.dictionaries(st.sampled_from("xyz"), safe_text)
                    ),
                ),
                max_size=3,
            ),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_content_that_fits_is_recorded_unchanged(input_messages: list[Message]) -> None:
    capture = ContentCapture(enabled=True, max_length=1_000_000)
    text = _PROPERTY_SPANS.record(capture, input_messages=input_messages)[GEN_AI_INPUT_MESSAGES]
    assert json.loads(text) == input_messages
