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
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["REPLACEMENT_CHARACTER", "clean_label_value", "clean_text"]

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
