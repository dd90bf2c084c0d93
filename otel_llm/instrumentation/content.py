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

import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.trace import Span

from otel_llm import settings
from otel_llm._semconv import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_SYSTEM_INSTRUCTIONS,
)

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

Message = dict[str, Any]
"""A message in the conventions' shape: ``role``, ``parts`` and, on output, ``finish_reason``."""
Part = dict[str, Any]
"""A message part: ``{"type": "text", "content": ...}``, ``tool_call``, ``tool_call_response``..."""

REDACTED: Final = "[REDACTED]"
REDACTION_FAILED: Final = "[REDACTION FAILED]"

# --- helpers for callers -----------------------------------------------------------------------


def text_part(text: str) -> Part:
    """A text part."""
    return {"type": "text", "content": text}


def tool_call_part(call_id: str | None, name: str, arguments: Any) -> Part:
    """A tool call the model requested; ``arguments`` as the provider gave them (text or dict)."""
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def tool_call_response_part(call_id: str | None, response: Any) -> Part:
    """The result of a tool call, sent back to the model."""
    return {"type": "tool_call_response", "id": call_id, "response": response}


def message(role: str, parts: list[Part], finish_reason: str | None = None) -> Message:
    """A message of any parts; ``finish_reason`` only for output messages."""
    result: Message = {"role": role, "parts": parts}
    if finish_reason is not None:
        result["finish_reason"] = finish_reason
    return result


def text_message(role: str, text: str, finish_reason: str | None = None) -> Message:
    """A message with a single text part; ``finish_reason`` only for output messages."""
    return message(role, [text_part(text)], finish_reason)


# --- redaction ---------------------------------------------------------------------------------
# Every pattern runs in linear time: scans that may fail (lookaheads, the first segments of a
# JWT) are bounded, so a long run of base64 cannot make redaction quadratic.

_SECRET_PATTERNS: Final[tuple[re.Pattern[str], ...]] = (
    # PEM private keys, with their headers (encrypted keys); also a block cut before its END.
    re.compile(
        r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----(?:\s*[A-Za-z-]{1,40}: [^\n]*)*"
        r"[A-Za-z0-9+/=\s]*(?:-----END[A-Z ]{0,40}PRIVATE KEY-----)?"
    ),
    # JSON Web Tokens: three base64url segments, the first a JSON header ("eyJ" = '{"').
    re.compile(r"eyJ[A-Za-z0-9_-]{4,1000}\.[A-Za-z0-9_-]{4,20000}\.[A-Za-z0-9_-]*"),
    # Anthropic (sk-ant-) and OpenAI project, service account and admin keys, anywhere.
    re.compile(r"sk-(?:ant|proj|svcacct|admin)-[A-Za-z0-9_-]{16,}"),
    # Other OpenAI keys (sk-...): a separate token with a digit or capital letter, which spares
    # hyphenated words like "desk-reservation-system".
    re.compile(r"(?<![A-Za-z0-9])sk-(?=[A-Za-z0-9_-]{0,200}[0-9A-Z])[A-Za-z0-9_-]{16,}"),
    # AWS access key ids (long-term AKIA, temporary ASIA).
    re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    # GitHub tokens: classic/OAuth/app (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained.
    re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    # Google API keys.
    re.compile(r"AIza[0-9A-Za-z_-]{30,}"),
)
_BEARER: Final = re.compile(r"\b([Bb]earer\s+)[A-Za-z0-9._~+/-]{8,}=*")
_SECRET_KEY_NAMES: Final = (
    r"api[_-]?key|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token"  # noqa: S105
    r"|refresh[_-]?token|password|passwd|secret"
)
# name=value, name: value, "name": "value" (also inside escaped JSON: \"name\": \"value\").
_PAIR: Final = re.compile(
    rf"(?i)(?P<key>(?:{_SECRET_KEY_NAMES})(?:\\?[\"'])?\s*[:=]\s*)(?!\[REDACTED\])"
    r"(?:(?P<q>\\?[\"'])(?:\\.|[^\\\n]){0,256}?(?P=q)|(?P<bare>\\?[\"']?[^\s\"'\\,;&})\]]+))"
)
# Keys of structured values (tool arguments, responses) whose scalar value is a secret.
_SECRET_KEY: Final = re.compile(
    rf"(?i)(?:^|.*[_-])(?:{_SECRET_KEY_NAMES}|token|authorization|cookie)$"
)


def _replace_pair(match: re.Match[str]) -> str:
    quote = match.group("q")
    if quote is not None:
        return f"{match.group('key')}{quote}{REDACTED}{quote}"
    return f"{match.group('key')}{REDACTED}"


def redact_secrets(text: str) -> str:
    """``text`` with obvious secrets (API keys, tokens, passwords) replaced by ``[REDACTED]``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    return _PAIR.sub(_replace_pair, text)


# --- normalization -----------------------------------------------------------------------------

_STRUCTURAL_PART_KEYS: Final = frozenset({"type", "id", "name", "mime_type", "modality"})
_STRUCTURAL_MESSAGE_KEYS: Final = frozenset({"role", "finish_reason", "name", "id"})


def _clean_text(text: str) -> str:
    # Lone surrogates cannot be encoded as UTF-8 by exporters.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _plain(value: Any) -> Any:
    """A JSON-able copy of a structural value (ids, roles, names)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, Mapping):
        return {_clean_text(str(key)): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return _clean_text(str(value))


class _Redactor:
    def __init__(self, hook: Callable[[str], str] | None) -> None:
        self._hook = hook
        self._hook_failure_reported = False

    def text(self, text: str) -> str:
        text = redact_secrets(_clean_text(text))
        if self._hook is None:
            return text
        try:
            result = self._hook(text)
            if not isinstance(result, str):
                raise TypeError(f"redact hook returned {type(result).__name__}, not str")
        except Exception:  # noqa: BLE001 - a broken hook must not leak the text or break the call
            log = _logger.debug if self._hook_failure_reported else _logger.warning
            self._hook_failure_reported = True
            log("otel-llm: the content redact hook failed; text replaced", exc_info=True)
            return REDACTION_FAILED
        return _clean_text(result)

    def value(self, value: Any) -> Any:
        """A JSON-able, redacted copy of a content value (text, or a structure of texts)."""
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            copy: dict[str, Any] = {}
            for key, item in value.items():
                name = _clean_text(str(key))
                secret = item is not None and _SECRET_KEY.match(name) is not None
                copy[name] = REDACTED if secret else self.value(item)
            return copy
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return self.text(str(value))

    def part(self, part: Any) -> Part:
        if not isinstance(part, Mapping):
            return {"type": "text", "content": self.value(part)}
        return {
            _clean_text(str(key)): (
                _plain(item) if key in _STRUCTURAL_PART_KEYS else self.value(item)
            )
            for key, item in part.items()
        }

    def message(self, msg: Any) -> Message:
        if not isinstance(msg, Mapping):
            return {"role": "user", "parts": [self.part(msg)]}
        result: Message = {}
        for key, item in msg.items():
            if key == "parts":
                parts = item if isinstance(item, list | tuple) else [item]
                result["parts"] = [self.part(part) for part in parts]
            elif key in _STRUCTURAL_MESSAGE_KEYS:
                result[key] = _plain(item)
            else:  # not the conventions' shape, but content all the same: redact it
                result[_clean_text(str(key))] = self.value(item)
        result.setdefault("parts", [])
        return result


# --- bounded JSON ------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _escaped_length(text: str) -> int:
    return len(_dumps(text)) - 2


_TWO_CHAR_ESCAPES: Final = frozenset('"\\\n\r\t\b\f')


def _char_length(char: str) -> int:
    if char in _TWO_CHAR_ESCAPES:
        return 2
    return 6 if char < " " else 1


def _marker(dropped: int) -> str:
    return f"…[truncated {dropped} chars]"


def _omitted_marker(parts: int, messages: int) -> Part:
    counts = []
    if parts:
        counts.append(f"{parts} part{'s' if parts != 1 else ''}")
    if messages:
        counts.append(f"{messages} message{'s' if messages != 1 else ''}")
    return text_part(f"…[truncated: {' and '.join(counts)} omitted]")


@dataclass
class _Slot:
    """One content value of a part that truncation may shorten."""

    part: Part
    key: str
    text: str
    original: Any
    """The value as it was, restored when it is kept whole (a dict stays a dict)."""
    need: int
    marker: int

    @property
    def least(self) -> int:
        return min(self.need, self.marker)

    def cost(self, level: int) -> int:
        if self.need <= level or self.marker >= self.need:
            return self.need
        return max(level, self.marker)


def _slots(parts: list[Part]) -> list[_Slot]:
    found = []
    for part in parts:
        for key, value in part.items():
            if key in _STRUCTURAL_PART_KEYS:
                continue
            if isinstance(value, str):
                text = value
            elif isinstance(value, dict | list):
                text = _dumps(value)
            else:
                continue
            found.append(
                _Slot(part, key, text, value, _escaped_length(text), len(_marker(len(text))))
            )
    return found


def _truncate(text: str, allowed: int) -> str:
    """The start of ``text`` and a marker, escaped length at most ``allowed``."""
    room = allowed - len(_marker(len(text)))
    kept = used = 0
    for char in text:
        used += _char_length(char)
        if used > room:
            break
        kept += 1
    return text[:kept] + _marker(len(text) - kept)


def _fill(slots: list[_Slot], budget: int) -> None:
    """Shares ``budget`` characters among the slots (max-min fair) and truncates them in place."""
    low, high = 0, max((slot.need for slot in slots), default=0)
    while low < high:
        level = (low + high + 1) // 2
        if sum(slot.cost(level) for slot in slots) <= budget:
            low = level
        else:
            high = level - 1
    spare = budget - sum(slot.cost(low) for slot in slots)
    for slot in slots:
        allowed = slot.cost(low)
        if allowed < slot.need and spare > 0:
            extra = min(spare, slot.need - allowed)
            spare -= extra
            allowed += extra
        if allowed >= slot.need:
            slot.part[slot.key] = slot.original
        else:
            slot.part[slot.key] = _truncate(slot.text, allowed)


class _Document:
    """A list of messages (or of parts) that can keep only its first ``n`` parts."""

    def __init__(self, items: list[Any], *, of_messages: bool) -> None:
        self.items = items
        self.of_messages = of_messages
        # Units in order: (message index, part index or None for a message without parts).
        self.units: list[tuple[int, int | None]] = []
        if of_messages:
            for index, msg in enumerate(items):
                count = len(msg["parts"])
                self.units.extend([(index, i) for i in range(count)] if count else [(index, None)])
        else:
            self.units = [(0, i) for i in range(len(items))]

    def keep(self, count: int) -> tuple[list[Any], list[Part]]:
        """Copies of the first ``count`` units (plus an omission marker) and their parts."""
        if not self.of_messages:
            parts = [dict(part) for part in self.items[:count]]
            omitted = len(self.items) - count
            return ([*parts, _omitted_marker(omitted, 0)] if omitted else parts), parts
        kept: list[Message] = []
        kept_index = -1
        all_parts: list[Part] = []
        for index, part_index in self.units[:count]:
            if index != kept_index:
                kept.append({**self.items[index], "parts": []})
                kept_index = index
            if part_index is not None:
                part = dict(self.items[index]["parts"][part_index])
                kept[-1]["parts"].append(part)
                all_parts.append(part)
        if count < len(self.units):
            # Whole messages dropped, and parts dropped from the last, partly kept message.
            messages = len(self.items) - len(kept)
            dropped = sum(1 for index, _ in self.units[count:] if index == kept_index)
            marker = _omitted_marker(dropped, messages)
            if kept:
                kept[-1]["parts"].append(marker)
            else:
                first = self.items[0]
                kept.append({"role": first.get("role", "user"), "parts": [marker]})
        return kept, all_parts


def _fitted(doc: _Document, count: int, max_length: int) -> str | None:
    """The JSON of the first ``count`` units, truncated to fit, or None if even that fails."""
    items, parts = doc.keep(count)
    slots = _slots(parts)
    for slot in slots:
        slot.part[slot.key] = ""
    skeleton = len(_dumps(items))
    budget = max_length - skeleton
    if budget < sum(slot.least for slot in slots):
        return None
    _fill(slots, budget)
    text = _dumps(items)
    return text if len(text) <= max_length else None


def _bounded_json(items: list[Any], max_length: int, *, of_messages: bool) -> str | None:
    """The JSON text of already redacted messages (or parts), at most ``max_length`` characters.

    None when not even an empty array fits.
    """
    text = _dumps(items)
    if len(text) <= max_length:
        return text
    doc = _Document(items, of_messages=of_messages)
    total = len(doc.units)
    whole = _fitted(doc, total, max_length)
    if whole is not None:
        return whole
    # Keep the longest prefix of parts that fits (with its omission marker).
    low, high = 0, total - 1
    best: str | None = None
    while low <= high:
        count = (low + high) // 2
        fitted = _fitted(doc, count, max_length)
        if fitted is not None:
            best, low = fitted, count + 1
        else:
            high = count - 1
    if best is not None:
        return best
    return "[]" if max_length >= 2 else None


# --- the capture -------------------------------------------------------------------------------


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
        self._redactor = _Redactor(redact)

    def encode_messages(self, messages: Sequence[Mapping[str, Any]]) -> str | None:
        """The redacted, bounded JSON text of ``messages``; None if nothing fits."""
        items = [self._redactor.message(msg) for msg in messages]
        return _bounded_json(items, self.max_length, of_messages=True)

    def encode_parts(self, parts: Sequence[Mapping[str, Any]]) -> str | None:
        """The redacted, bounded JSON text of ``parts`` (system instructions)."""
        items = [self._redactor.part(part) for part in parts]
        return _bounded_json(items, self.max_length, of_messages=False)

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
