"""Text from outside made safe to encode, store and expose: no lone surrogates, no NUL.

Names and messages in spans come from the application's callers (a gateway passes a client's
model name on), so they may hold what no exporter, store or scrape can take:

- a lone surrogate (U+D800-U+DFFF; in a Python ``str`` every surrogate is lone, since a valid
  pair is decoded into one code point): UTF-8 cannot encode it, and one such label value made
  every later ``/metrics`` scrape fail with ``UnicodeEncodeError``;
- NUL: PostgreSQL rejects it in text columns, and C strings end at it.

Both become U+FFFD, the Unicode replacement character, one for one, so lengths and the rest of
the text are kept. Text that needs nothing is returned as the same object, checked first with
``str.isascii()`` (a flag CPython keeps on every string), so the common case costs a few tens of
nanoseconds (``tests/test_text.py`` measures it).

JSON from outside (the call log API's bodies, OTLP/JSON requests) is read by ``json_from_outside``
-- strict UTF-8, no ``NaN``/``Infinity`` -- and may still hold a lone surrogate as an escape
(``\ud800``): ``has_surrogate_escape`` says whether to look, ``clean_json`` cleans every string.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = [
    "REPLACEMENT_CHARACTER",
    "clean_json",
    "clean_label_value",
    "clean_text",
    "has_surrogate_escape",
    "json_from_outside",
]

REPLACEMENT_CHARACTER: Final = "\ufffd"
"""What each unsafe character becomes (U+FFFD)."""

_UNSAFE_IN_TEXT: Final = re.compile("[\x00\ud800-\udfff]")
# Label values also lose the other C0 controls and DEL: a label names a model or a service,
# where a control character is never meant and makes dashboards and legends unreadable.
_UNSAFE_IN_LABEL: Final = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` with lone surrogates and NUL replaced by U+FFFD; ``value`` itself if none."""
    if value.isascii():  # no surrogates possible
        return value if "\x00" not in value else value.replace("\x00", REPLACEMENT_CHARACTER)
    if _UNSAFE_IN_TEXT.search(value) is None:
        return value
    return _UNSAFE_IN_TEXT.sub(REPLACEMENT_CHARACTER, value)


def clean_label_value(value: str, max_length: int) -> str:
    """A Prometheus label value: at most ``max_length`` characters, every one of them encodable.

    Lone surrogates, NUL, the other C0 control characters (tab and newline included) and DEL
    become U+FFFD. ``value`` itself is returned when it needs nothing.
    """
    if len(value) > max_length:
        value = value[: max(max_length, 0)]
    if value.isascii() and value.isprintable():  # printable ASCII: no controls, no surrogates
        return value
    if _UNSAFE_IN_LABEL.search(value) is None:
        return value
    return _UNSAFE_IN_LABEL.sub(REPLACEMENT_CHARACTER, value)


def json_from_outside(raw: bytes, **options: Any) -> Any:
    """``raw`` as JSON (``options``: ``json.loads``'), decoded as strict UTF-8 -- ``json.loads`` of
    bytes lets the UTF-8 form of a surrogate through (found in review: a 500 in the API, a
    SystemError in protobuf's parser) -- and with ``NaN`` and ``Infinity`` refused: no JSON
    number. ``ValueError`` when it is neither (``UnicodeDecodeError`` included), ``RecursionError``
    when nested past the parser's stack."""
    return json.loads(raw.decode(), parse_constant=_no_constant, **options)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


def has_surrogate_escape(raw: bytes) -> bool:
    """Whether JSON ``raw`` holds the escape of a UTF-16 surrogate: alone (not in a pair), it
    decodes to a string UTF-8 cannot encode. Only a document holding one need be looked at."""
    return _SURROGATE_ESCAPE.search(raw) is not None


def clean_json(value: Any) -> Any:
    """A JSON value with every string ``clean_text``-ed, keys included (its nesting bounded by
    whoever parsed it)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(key): clean_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_json(item) for item in value]
    return value
