"""Redaction of message content: obvious secrets, then the user's hook, on every text.

Structured values (tool arguments, responses) are copied as JSON-able values, their texts
redacted and the scalar values of secret-looking keys replaced; the structural fields of parts
and messages (``STRUCTURAL_PART_KEYS``, ``STRUCTURAL_MESSAGE_KEYS``) are kept as they are.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from otel_llm.instrumentation.messages import (
    STRUCTURAL_MESSAGE_KEYS,
    STRUCTURAL_PART_KEYS,
    Message,
    Part,
)

_logger = logging.getLogger(__name__)

REDACTED: Final = "[REDACTED]"
REDACTION_FAILED: Final = "[REDACTION FAILED]"

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
