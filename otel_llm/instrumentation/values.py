"""Reading values out of SDK requests and responses: typed, and None for anything unexpected.

The SDKs pass sentinels (``omit``, ``NOT_GIVEN``) for parameters not given, and their response
objects differ across versions; every reader here answers None rather than raise or pass on a
value of the wrong type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from otel_llm.instrumentation.messages import Message, text_message
from otel_llm.redaction import key_hint

# Whether a type is a Mapping, per type: ``isinstance(x, Mapping)`` goes through the ABC's
# __instancecheck__ (~0.3 µs), and a stream's reader asked it ~5 times per chunk. A proxy's type
# is never cached (its answer depends on what it wraps). The bound keeps a program that makes
# classes on the fly flat.
_MAX_TYPES = 256
_is_mapping: dict[type, bool] = {}
known_mapping_types = _is_mapping
"""Types known to be (True) or not to be (False) a Mapping; for a per-chunk reader that inlines
``reader``: ``getattr if known_mapping_types.get(type(x)) is False else field``."""


def get(obj: Any, *path: str) -> Any:
    """``obj.a.b`` (or ``obj["a"]["b"]``), None when any step is missing."""
    for name in path:
        if obj is None:
            return None
        kind = type(obj)
        mapping = _is_mapping.get(kind)
        if mapping is None:
            mapping = isinstance(obj, Mapping)
            if obj.__class__ is kind:
                if len(_is_mapping) >= _MAX_TYPES:
                    _is_mapping.clear()
                _is_mapping[kind] = mapping
        obj = obj.get(name) if mapping else getattr(obj, name, None)
    return obj


def field(obj: Any, name: str, default: None = None) -> Any:
    """``get(obj, name)`` for what reads every item of a stream: an object of a type known not
    to be a Mapping (the SDKs' models, after their first item) costs one dict look-up and one
    getattr, a quarter of ``get``'s time. (``default``: only so that it is called as
    ``getattr(obj, name, None)`` is, see ``reader``.)"""
    if _is_mapping.get(type(obj)) is False:
        return getattr(obj, name, None)
    return get(obj, name)


def reader(obj: Any) -> Callable[[Any, str, None], Any]:
    """What reads ``obj``'s fields, called as ``read(obj, name, None)``: ``getattr`` itself for
    an object of a type known not to be a Mapping, else ``field``. For a reader of several
    fields of one object: no call of ours per field."""
    return getattr if _is_mapping.get(type(obj)) is False else field


def number(value: Any) -> float | int | None:
    """A request parameter that is a real number (not the SDKs' ``omit``/``NOT_GIVEN``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def strings(value: Any) -> list[str] | None:
    """A string or a non-empty sequence of strings, as a list."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not value:  # a tuple of types: faster than a union
        return None
    for item in value:  # not all(generator): every chat call comes here
        if not isinstance(item, str):
            return None
    return list(value)


# A client's base URL (an immutable httpx.URL or str) is the same object call after call:
# parsing it (~3 µs) is done once per URL object. The entry holds the URL, so its id is not
# reused while the entry lives; the bound keeps a program that makes many clients flat.
_MAX_SERVERS = 64
_servers: dict[int, tuple[Any, str | None, int | None, str]] = {}


def _server(base_url: Any) -> tuple[Any, str | None, int | None, str]:
    entry = _servers.get(id(base_url))
    if entry is not None and entry[0] is base_url:
        return entry
    entry = (base_url, *_parse_server(base_url))
    if len(_servers) >= _MAX_SERVERS:
        _servers.clear()
    _servers[id(base_url)] = entry
    return entry


def server_attributes(base_url: Any) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port`` of a client's base URL (default ports filled in)."""
    entry = _server(base_url)
    return entry[1], entry[2]


def url_path(base_url: Any, api_path: str) -> str:
    """``url.path`` of a request to ``api_path`` (``/chat/completions``) by a client at
    ``base_url``: the SDKs join the two (``/v1`` + ``/chat/completions``)."""
    return _server(base_url)[3] + api_path


def _parse_server(base_url: Any) -> tuple[str | None, int | None, str]:
    try:
        parts = urlsplit(str(base_url))
        host = parts.hostname
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None, None, ""
    return host, port, parts.path.rstrip("/")


# A client's key is the same str object call after call: its hint is made once per key object.
# The entry keeps the key's hash, not the key, so no key outlives its client here; a key made
# at the id of a forgotten one and with its hash is, for all purposes, the same key.
_MAX_HINTS = 64
_hints: dict[int, tuple[int, str | None]] = {}


def api_key_hint(api_key: Any) -> str | None:
    """``redaction.key_hint`` of a client's key (None for no key, or one that is not a str)."""
    if not isinstance(api_key, str):
        return None
    digest = hash(api_key)
    entry = _hints.get(id(api_key))
    if entry is not None and entry[0] == digest:
        return entry[1]
    hint = key_hint(api_key)
    if len(_hints) >= _MAX_HINTS:
        _hints.clear()
    _hints[id(api_key)] = (digest, hint)
    return hint


def http_status(result: Any) -> int:
    """The HTTP status of an SDK call that returned ``result``: a raw response's or a stream's own
    status, else 200 (the SDKs raise on any status that is not 2xx, and these APIs answer 200)."""
    kind = type(result).__name__
    if kind.endswith("Stream"):
        status = get(result, "response", "status_code")
    elif kind.endswith("APIResponse"):
        status = get(result, "status_code")
    else:
        return 200
    return status if integer(status) is not None and 200 <= status < 300 else 200


def text_of(content: Any) -> str | None:
    """The text of a message's content: a string, or the text parts of a list of parts (OpenAI
    ``{"type": "text"|"input_text"|"output_text", "text": ...}``, Anthropic text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        texts = [get(part, "text") for part in content]
        joined = "".join(text for text in texts if isinstance(text, str))
        return joined or None
    return None


def text_messages(messages: Any) -> list[Message]:
    """Request messages (``{"role", "content"}``) as the conventions' text messages."""
    result = []
    for message in messages if isinstance(messages, list | tuple) else ():
        role, text = get(message, "role"), text_of(get(message, "content"))
        if isinstance(role, str) and text is not None:
            result.append(text_message(role, text))
    return result
