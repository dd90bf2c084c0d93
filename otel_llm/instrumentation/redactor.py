"""Redaction of message content: obvious secrets (``otel_llm.redaction``), then the user's
hook, on every text.

Structured values (tool arguments, responses) are copied as JSON-able values, their texts
redacted and the scalar values of secret-looking keys replaced; the structural fields of parts
and messages (``STRUCTURAL_PART_KEYS``, ``STRUCTURAL_MESSAGE_KEYS``) are kept as they are.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from otel_llm.instrumentation.messages import (
    STRUCTURAL_MESSAGE_KEYS,
    STRUCTURAL_PART_KEYS,
    Message,
    Part,
)
from otel_llm.redaction import REDACTED, is_secret_key, redact_secrets

_logger = logging.getLogger(__name__)

REDACTION_FAILED: Final = "[REDACTION FAILED]"


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


class Redactor:
    """Redacts texts, values, parts and messages; a failing ``hook`` is reported once at
    warning level."""

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
                secret = item is not None and is_secret_key(name)
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
                _plain(item) if key in STRUCTURAL_PART_KEYS else self.value(item)
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
            elif key in STRUCTURAL_MESSAGE_KEYS:
                result[key] = _plain(item)
            else:  # not the conventions' shape, but content all the same: redact it
                result[_clean_text(str(key))] = self.value(item)
        result.setdefault("parts", [])
        return result
