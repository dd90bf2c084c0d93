"""What the span of each OpenAI API says, from its request, its response or its stream.

``Chat`` (``chat.completions``), ``Responses`` (``responses``) and ``Embeddings``
(``embeddings``) each read their API's fields; ``ChatStream`` and ``ResponsesStream`` are the
``StreamHandler``s of the streamed ones. ``openai.py`` wraps the SDK's methods with them.
"""

from __future__ import annotations

from typing import Any

from otel_llm import _semconv as sc
from otel_llm.instrumentation.content import ContentCapture, text_message, text_part
from otel_llm.instrumentation.values import (
    field,
    get,
    integer,
    known_mapping_types,
    number,
    reader,
    strings,
    text_messages,
    text_of,
)
from otel_llm.lifecycle import CallSpan

# Where each API reports the conventions' counts (both include cached input in the input
# count and reasoning in the output count, as the conventions do): CallSpan.set_usage's
# keywords -> the path in the API's ``usage``.
_CHAT_USAGE = {
    "input_tokens": ("prompt_tokens",),
    "output_tokens": ("completion_tokens",),
    "cache_read_tokens": ("prompt_tokens_details", "cached_tokens"),
    "reasoning_tokens": ("completion_tokens_details", "reasoning_tokens"),
}
_RESPONSES_USAGE = {
    "input_tokens": ("input_tokens",),
    "output_tokens": ("output_tokens",),
    "cache_read_tokens": ("input_tokens_details", "cached_tokens"),
    "reasoning_tokens": ("output_tokens_details", "reasoning_tokens"),
}


def _usage_counts(usage: Any, fields: dict[str, tuple[str, ...]]) -> dict[str, int | None] | None:
    """``usage``'s counts as ``CallSpan.set_usage``'s keywords; None when there is no usage."""
    if usage is None:
        return None
    # Every call reads these: the usage's fields with one reader, the details' with field(),
    # not get(usage, *path) per count (~1.5 µs a call less).
    read = reader(usage)
    counts: dict[str, int | None] = {}
    for name, path in fields.items():
        value = read(usage, path[0], None)
        for step in path[1:]:
            value = field(value, step) if value is not None else None
        counts[name] = value if type(value) is int else integer(value)
    return counts


def _set_usage(call: CallSpan, usage: Any, fields: dict[str, tuple[str, ...]]) -> None:
    counts = _usage_counts(usage, fields)
    if counts is None:
        call.usage_missing()
    else:
        call.set_usage(**counts)


def _record_output_text(capture: ContentCapture, call: CallSpan, text: Any) -> None:
    if capture.enabled and isinstance(text, str) and text:
        capture.record(call.span, output_messages=[text_message("assistant", text)])


class Api:
    """What one SDK method's span says, from its request and its response."""

    operation = "chat"
    path = "/chat/completions"
    """Where the SDK sends the request, under the client's base URL."""

    def __init__(self, capture: ContentCapture):
        self.capture = capture

    def record_input(self, call: CallSpan, kwargs: dict[str, Any]) -> None:
        """Record the request's messages when content capture is on."""

    def request_attributes(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def on_response(self, call: CallSpan, response: Any) -> None:
        call.set_response(id=get(response, "id"), model=get(response, "model"))

    def stream_handler(self) -> Any:
        raise NotImplementedError


# The request parameters each API reads into attributes. Most calls give none of them (model
# and messages only): checking that first spares ~16 look-ups and checks per call.
_CHAT_PARAMETERS = frozenset(
    (
        "max_completion_tokens",
        "max_tokens",
        "n",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
    )
)
_RESPONSES_PARAMETERS = frozenset(("temperature", "top_p", "max_output_tokens"))


class Chat(Api):
    def request_attributes(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if _CHAT_PARAMETERS.isdisjoint(kwargs):
            return {}
        max_tokens = kwargs.get("max_completion_tokens")
        if number(max_tokens) is None:
            max_tokens = kwargs.get("max_tokens")
        choices = number(kwargs.get("n"))
        return {
            sc.GEN_AI_REQUEST_TEMPERATURE: number(kwargs.get("temperature")),
            sc.GEN_AI_REQUEST_TOP_P: number(kwargs.get("top_p")),
            sc.GEN_AI_REQUEST_MAX_TOKENS: number(max_tokens),
            sc.GEN_AI_REQUEST_STOP_SEQUENCES: strings(kwargs.get("stop")),
            sc.GEN_AI_REQUEST_SEED: number(kwargs.get("seed")),
            sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: number(kwargs.get("frequency_penalty")),
            sc.GEN_AI_REQUEST_PRESENCE_PENALTY: number(kwargs.get("presence_penalty")),
            sc.GEN_AI_REQUEST_CHOICE_COUNT: choices if choices != 1 else None,
        }

    def record_input(self, call: CallSpan, kwargs: dict[str, Any]) -> None:
        if self.capture.enabled:
            messages = text_messages(kwargs.get("messages"))
            self.capture.record(call.span, input_messages=messages)

    def on_response(self, call: CallSpan, response: Any) -> None:
        choices = field(response, "choices") or ()
        reasons = [field(choice, "finish_reason") for choice in choices]
        call.set_response_and_usage(
            id=field(response, "id"),
            model=field(response, "model"),
            finish_reasons=strings([r for r in reasons if r]),
            usage=_usage_counts(field(response, "usage"), _CHAT_USAGE),
        )
        if self.capture.enabled:
            output = [
                text_message(
                    "assistant",
                    text_of(get(choice, "message", "content")) or "",
                    get(choice, "finish_reason"),
                )
                for choice in choices
            ]
            self.capture.record(call.span, output_messages=output)

    def stream_handler(self) -> ChatStream:
        return ChatStream(self.capture)


class ChatStream:
    # on_item runs for every chunk: it reads only what it needs (the choice's index only for a
    # finish reason or captured text, the delta's other fields only until the first content).
    def __init__(self, capture: ContentCapture) -> None:
        self.capture = capture
        self.capturing = capture.enabled
        self.id: Any = None
        self.model: Any = None
        self.finish_reasons: dict[int, str] = {}
        self.texts: dict[int, list[str]] = {}
        self.usage: Any = None
        self.first_seen = False
        self.settled: type | None = None
        """The chunks' type once only finish reasons and usage are left to read (the first
        content seen, id and model known, content not captured, chunk and choice types known not
        to be Mappings); the choices' type in ``choice_type``."""
        self.choice_type: type | None = None

    def on_item(self, call: CallSpan, chunk: Any) -> None:
        if type(chunk) is self.settled:
            # Most chunks of a stream: a few getattrs, no call.
            for choice in getattr(chunk, "choices", None) or ():
                if type(choice) is not self.choice_type:
                    self._read(call, chunk)
                    return
                reason = getattr(choice, "finish_reason", None)
                if reason is not None and isinstance(reason, str):
                    self.finish_reasons[integer(getattr(choice, "index", None)) or 0] = reason
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                self.usage = usage
            return
        self._read(call, chunk)

    def _read(self, call: CallSpan, chunk: Any) -> None:
        # reader(), inlined: this runs for every chunk and every choice.
        read = getattr if known_mapping_types.get(type(chunk)) is False else field
        if not self.id:
            self.id = read(chunk, "id", None)
        if not self.model:
            self.model = read(chunk, "model", None)
        choice_type = None
        for choice in read(chunk, "choices", None) or ():
            read_choice = getattr if known_mapping_types.get(type(choice)) is False else field
            choice_type = type(choice) if read_choice is getattr else None
            content: Any = None
            if self.capturing or not self.first_seen:
                # After the first content, and unless capturing, the delta is not read at all.
                delta = read_choice(choice, "delta", None)
                content = field(delta, "content")
                if not self.first_seen and (
                    content or field(delta, "tool_calls") or field(delta, "refusal")
                ):
                    self.first_seen = True
                    call.first_chunk()
            reason = read_choice(choice, "finish_reason", None)
            captured = self.capturing and isinstance(content, str)
            if captured or isinstance(reason, str):
                index = integer(read_choice(choice, "index", None)) or 0
                if captured:
                    self.texts.setdefault(index, []).append(content)
                if isinstance(reason, str):
                    self.finish_reasons[index] = reason
        usage = read(chunk, "usage", None)
        if usage is not None:
            self.usage = usage
        if (
            read is getattr
            and choice_type is not None
            and self.first_seen
            and not self.capturing
            and self.id
            and self.model
        ):
            self.settled, self.choice_type = type(chunk), choice_type

    def complete(self, call: CallSpan) -> None:
        reasons = [self.finish_reasons[i] for i in sorted(self.finish_reasons)]
        call.set_response_and_usage(
            id=self.id,
            model=self.model,
            finish_reasons=reasons or None,
            usage=_usage_counts(self.usage, _CHAT_USAGE),
        )
        if self.capturing and self.texts:
            output = [
                text_message("assistant", "".join(self.texts[i]), self.finish_reasons.get(i))
                for i in sorted(self.texts)
            ]
            self.capture.record(call.span, output_messages=output)


class Responses(Api):
    path = "/responses"

    def request_attributes(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if _RESPONSES_PARAMETERS.isdisjoint(kwargs):
            return {}
        return {
            sc.GEN_AI_REQUEST_TEMPERATURE: number(kwargs.get("temperature")),
            sc.GEN_AI_REQUEST_TOP_P: number(kwargs.get("top_p")),
            sc.GEN_AI_REQUEST_MAX_TOKENS: number(kwargs.get("max_output_tokens")),
        }

    def record_input(self, call: CallSpan, kwargs: dict[str, Any]) -> None:
        if not self.capture.enabled:
            return
        given = kwargs.get("input")
        messages = [text_message("user", given)] if isinstance(given, str) else text_messages(given)
        instructions = kwargs.get("instructions")
        system = [text_part(instructions)] if isinstance(instructions, str) else None
        self.capture.record(call.span, input_messages=messages, system_instructions=system)

    def on_response(self, call: CallSpan, response: Any) -> None:
        super().on_response(call, response)
        _set_usage(call, get(response, "usage"), _RESPONSES_USAGE)
        _record_output_text(self.capture, call, get(response, "output_text"))

    def stream_handler(self) -> ResponsesStream:
        return ResponsesStream(self.capture)


class ResponsesStream:
    def __init__(self, capture: ContentCapture) -> None:
        self.capture = capture
        self.response: Any = None
        self.texts: list[str] = []

    def on_item(self, call: CallSpan, event: Any) -> None:
        kind = field(event, "type")
        if kind in {"response.output_text.delta", "response.refusal.delta"}:
            call.first_chunk()
            delta = field(event, "delta")
            if self.capture.enabled and kind == "response.output_text.delta" and delta:
                self.texts.append(delta)
        response = field(event, "response")
        if response is not None:  # created, in_progress, completed, incomplete, failed
            self.response = response

    def complete(self, call: CallSpan) -> None:
        call.set_response(id=get(self.response, "id"), model=get(self.response, "model"))
        _set_usage(call, get(self.response, "usage"), _RESPONSES_USAGE)
        _record_output_text(self.capture, call, "".join(self.texts))
        if get(self.response, "status") == "failed":
            # The SDK yields a failed response's events rather than raising: the call failed.
            code = get(self.response, "error", "code")
            message = get(self.response, "error", "message")
            call.fail_as(
                code if isinstance(code, str) else "response.failed",
                message if isinstance(message, str) else "response failed",
            )
            call.set(sc.OTEL_LLM_ERROR_CODE, code if isinstance(code, str) else None)


class Embeddings(Api):
    operation = "embeddings"
    path = "/embeddings"

    def on_response(self, call: CallSpan, response: Any) -> None:
        call.set_response(model=get(response, "model"))
        call.set_usage(input_tokens=integer(get(response, "usage", "prompt_tokens")))
