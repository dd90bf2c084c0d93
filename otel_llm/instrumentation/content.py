"""Opt-in capture of prompts and responses on GenAI spans, redacted and bounded in size.

The instrumentors hand over messages in the conventions' shape, as plain dicts::

    {"role": "user" | "assistant" | "system" | "tool",
     "parts": [{"type": "text", "content": "..."},
               {"type": "tool_call", "id": "...", "name": "...", "arguments": ...},
               {"type": "tool_call_response", "id": "...", "response": ...}],
     "finish_reason": "stop"}  # output messages only

and :class:`ContentCapture` records them as ``gen_ai.input.messages``,
``gen_ai.output.messages`` and ``gen_ai.system_instructions`` (a JSON array of parts).

Capture is off by default (content is often personal data). When on, every content value goes
through, in this order:

1. built-in redaction of obvious secrets (API keys, tokens, passwords), replaced by
   ``[REDACTED]`` -- before truncation, so a secret cut in half is still redacted;
2. the user's ``redact`` hook, on each text; a hook that fails replaces the text by
   ``[REDACTION FAILED]`` rather than let it through;
3. truncation, so that each attribute's JSON text is at most ``max_length`` characters and still
   valid JSON. Texts keep their start (a prompt is truncated, a response becomes a preview) and
   end with ``…[truncated N chars]``; the budget is shared so that short texts stay whole and
   long ones are cut to the same length. When even the message structure does not fit, trailing
   parts and messages are dropped and a final text part says how many.

Content values are the fields of a part other than ``type``, ``id``, ``name``, ``mime_type`` and
``modality``: a text's ``content``, a tool call's ``arguments``, a tool result's ``response``, a
URI part's ``uri`` (and any message field besides ``role``, ``parts``, ``finish_reason``,
``name`` and ``id``, redacted though never truncated). Structured arguments and responses
(dicts, lists) are kept as JSON values while they fit; when they must be cut they become their
JSON text, truncated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import Span

from otel_llm import settings
from otel_llm._semconv import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_SYSTEM_INSTRUCTIONS,
)
from otel_llm.instrumentation.bounded_json import bounded_json
from otel_llm.instrumentation.messages import (
    Message,
    Part,
    message,
    text_message,
    text_part,
    tool_call_part,
    tool_call_response_part,
)
from otel_llm.instrumentation.redactor import REDACTION_FAILED, Redactor
from otel_llm.redaction import REDACTED, redact_secrets

__all__ = [
    "REDACTED",
    "REDACTION_FAILED",
    "ContentCapture",
    "Message",
    "Part",
    "message",
    "redact_secrets",
    "text_message",
    "text_part",
    "tool_call_part",
    "tool_call_response_part",
]

_logger = logging.getLogger(__name__)


class ContentCapture:
    """Records prompts and responses on spans when content capture is on.

    ``enabled`` and ``max_length`` resolve like every otel-llm setting: argument, then
    ``OTEL_LLM_CAPTURE_CONTENT`` (or the standard
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``) and ``OTEL_LLM_CONTENT_MAX_LENGTH``,
    then the defaults (off; 4096 characters per attribute). ``redact`` runs on each text after
    the built-in secret redaction.
    """

    def __init__(
        self,
        *,
        enabled: bool | None = None,
        max_length: int | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.enabled: bool = settings.CAPTURE_CONTENT.resolve(enabled)
        self.max_length: int = settings.CONTENT_MAX_LENGTH.resolve(max_length)
        self._redactor = Redactor(redact)

    def encode_messages(self, messages: Sequence[Mapping[str, Any]]) -> str | None:
        """The redacted, bounded JSON text of ``messages``; None if nothing fits."""
        items = [self._redactor.message(msg) for msg in messages]
        return bounded_json(items, self.max_length, of_messages=True)

    def encode_parts(self, parts: Sequence[Mapping[str, Any]]) -> str | None:
        """The redacted, bounded JSON text of ``parts`` (system instructions)."""
        items = [self._redactor.part(part) for part in parts]
        return bounded_json(items, self.max_length, of_messages=False)

    def record(
        self,
        span: Span,
        *,
        input_messages: Sequence[Mapping[str, Any]] | None = None,
        output_messages: Sequence[Mapping[str, Any]] | None = None,
        system_instructions: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Sets the content attributes given (not None, not empty) on ``span``.

        Does nothing when capture is off or the span is not recording; never raises.
        """
        if not self.enabled:
            return
        try:
            if not span.is_recording():
                return
            # A bare string (against the signature) is one text, not a sequence of characters.
            if isinstance(system_instructions, str):
                system_instructions = [text_part(system_instructions)]
            if isinstance(input_messages, str):
                input_messages = [text_message("user", input_messages)]
            if isinstance(output_messages, str):
                output_messages = [text_message("assistant", output_messages)]
            for attribute, values, encode in (
                (GEN_AI_SYSTEM_INSTRUCTIONS, system_instructions, self.encode_parts),
                (GEN_AI_INPUT_MESSAGES, input_messages, self.encode_messages),
                (GEN_AI_OUTPUT_MESSAGES, output_messages, self.encode_messages),
            ):
                if not values:
                    continue
                try:
                    text = encode(values)
                    if text is not None:
                        span.set_attribute(attribute, text)
                except Exception:
                    _logger.debug("otel-llm: could not record %s", attribute, exc_info=True)
        except Exception:
            _logger.debug("otel-llm: could not record content", exc_info=True)
