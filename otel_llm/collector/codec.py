"""What the OTLP trace receivers share: the ``accept`` contract, decoding a request body
(Content-Encoding, OTLP/JSON) and the ``google.rpc.Status`` answers with their RetryInfo.

``accept`` takes a decoded request; what it refuses (``Refused``) is answered with the OTLP
back-pressure signals, so SDK exporters retry instead of dropping: gRPC ``RESOURCE_EXHAUSTED``
with a ``google.rpc.RetryInfo``, HTTP 503 with ``Retry-After``.
"""

from __future__ import annotations

import base64
import math
import threading
import zlib
from collections.abc import Callable
from typing import Any, Literal

from google.protobuf import duration_pb2, json_format
from google.protobuf.any_pb2 import Any as AnyMessage

# No stubs for google.rpc (googleapis-common-protos ships none).
from google.rpc import (  # type: ignore[import-untyped,unused-ignore]
    error_details_pb2,
    status_pb2,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm.text import clean_json, has_surrogate_escape, json_from_outside

__all__ = [
    "BUSY_DECODING",
    "DECODING_REQUESTS",
    "JSON",
    "MAX_JSON_DEPTH",
    "PROTOBUF",
    "TRACES_PATH",
    "Accept",
    "DecodingBudget",
    "Refused",
    "TooLarge",
    "Transport",
    "UnsupportedEncoding",
    "decompress",
    "parse_json",
    "retry_after_header",
    "retry_info",
    "status_message",
]

Transport = Literal["grpc", "http"]

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class Refused(Exception):
    """Raised by ``accept``: the request was not taken; the client should send it again."""

    def __init__(self, reason: str, retry_after: float, message: str):
        super().__init__(message)
        self.reason = reason
        """``queue_full`` or ``shutting_down`` (a label of the refused counter)."""
        self.retry_after = retry_after
        self.message = message


class TooLarge(ValueError):
    """The request (or what it decompresses to) is larger than the limit."""


class UnsupportedEncoding(ValueError):
    """A Content-Encoding other than gzip, deflate and identity."""


Accept = Callable[[ExportTraceServiceRequest, bytes | None, Transport], None]
"""Takes a decoded request, its protobuf bytes as received (None for JSON: the caller
serializes) and the transport; returns once the request is accepted, or raises ``Refused``."""


DECODING_REQUESTS = 4
"""Requests of the largest size that the receivers may decode at once (``DecodingBudget``, by
their decompressed size): a protobuf request grows up to ~86 times once parsed (3.9 MB of empty
spans: 333 MB), so this bounds what decoding holds to ~350 MB per MiB of the largest request.
Any number of small requests fit beside each other."""
BUSY_DECODING = "too many bytes being decoded at once"


class DecodingBudget:
    """Bytes of requests the receivers may be decoding (and handing to ``accept``) at once; a
    request larger than the whole budget takes all of it (decoded alone rather than never).
    Past it a request is refused as when the queue is full: the client retries."""

    def __init__(self, limit: int):
        self._limit = limit
        self._left = limit
        self._lock = threading.Lock()

    @classmethod
    def for_requests(cls, max_request_bytes: int) -> DecodingBudget:
        return cls(DECODING_REQUESTS * max_request_bytes)

    def take(self, size: int) -> int:
        """The bytes taken (at least 1), or 0 when they are not there now."""
        size = max(1, min(size, self._limit))
        with self._lock:
            if size > self._left:
                return 0
            self._left -= size
        return size

    def give(self, size: int) -> None:
        with self._lock:
            self._left += size


# --- decoding -----------------------------------------------------------------------------------


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded from its Content-Encoding (``gzip``, ``deflate`` or ``identity``),
    never producing more than ``limit`` bytes: a small gzip bomb must not fill the memory.

    Raises ``TooLarge``, ``UnsupportedEncoding`` or ``zlib.error`` (corrupt data).
    """
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedEncoding(f"unsupported content encoding {encoding!r}")
    view = memoryview(body)
    parts: list[bytes] = []
    size = 0
    start = 0
    while start < len(view):  # gzip allows several members one after the other
        inflater = zlib.decompressobj(wbits)
        end = start
        chunk = _FIRST_CHUNK
        while not inflater.eof:
            if end >= len(view):
                raise zlib.error("truncated compressed data")
            piece = view[end : end + chunk]
            # The size is checked as the output grows: a bomb stops at limit + 1 bytes.
            part = inflater.decompress(piece, limit + 1 - size)
            size += len(part)
            if size > limit or inflater.unconsumed_tail:
                raise TooLarge(f"the request decompresses to more than {limit} bytes")
            parts.append(part)
            end += len(piece)
            chunk = min(2 * chunk, _MAX_CHUNK)
        # zlib copies what follows a member's end into unused_data: fed the whole rest, that
        # made n members cost O(n^2) (200,000 empty members took 30 s). Fed in pieces that
        # grow from small with the member, the copy is at most about the member's own size.
        start = end - len(inflater.unused_data)
        if encoding == "deflate":
            break  # one stream; what follows it is ignored, as before
    return b"".join(parts)


_FIRST_CHUNK = 256
_MAX_CHUNK = 64 * 1024


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON request: as protobuf's JSON mapping, except that trace and span ids are
    hex strings (not base64), and unknown fields are ignored (the OTLP specification)."""
    try:
        document = json_from_outside(body)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(document, dict):
        raise ValueError("an OTLP/JSON request is a JSON object")
    _check_depth(document)
    if has_surrogate_escape(body):
        # A lone surrogate made protobuf's parser fail with a SystemError (a 500, found in
        # review): made U+FFFD, as the spans' other text from outside (``text.py``).
        document = clean_json(document)
    for resource_spans in _items(document, "resourceSpans", "resource_spans"):
        for scope_spans in _items(resource_spans, "scopeSpans", "scope_spans"):
            for span in _items(scope_spans, "spans"):
                _hex_ids(span, "traceId", "trace_id", "spanId", "span_id")
                _hex_ids(span, "parentSpanId", "parent_span_id")
                for link in _items(span, "links"):
                    _hex_ids(link, "traceId", "trace_id", "spanId", "span_id")
    request = ExportTraceServiceRequest()
    json_format.ParseDict(document, request, ignore_unknown_fields=True)
    return request


MAX_JSON_DEPTH = 100
"""Deepest OTLP/JSON document accepted (objects and arrays). Deeper ones are refused (400)
rather than failing on the way: json and protobuf's JSON parser recurse (a RecursionError was a
500 with a traceback), and protobuf refuses binary messages nested over 100 levels, which a
forwarded request would be. Real spans nest attribute values a few levels deep."""


def _check_depth(document: dict[str, Any]) -> None:
    # Iterative, so that the check itself cannot overflow the stack.
    level: list[Any] = [document]
    for _ in range(MAX_JSON_DEPTH):
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]
        if not level:
            return
    raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def _items(container: Any, *names: str) -> list[Any]:
    if not isinstance(container, dict):
        raise ValueError("expected a JSON object")
    for name in names:
        value = container.get(name)
        if value is not None:
            if not isinstance(value, list):
                raise ValueError(f"{name} must be a list")
            return value
    return []


def _hex_ids(container: Any, *names: str) -> None:
    if not isinstance(container, dict):  # a span or link that is not an object: a 400
        raise ValueError("expected a JSON object")
    for name in names:
        value = container.get(name)
        if isinstance(value, str):
            # bytes.fromhex raises ValueError on anything but hex digits: a 400, not a guess.
            container[name] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


# --- answering ----------------------------------------------------------------------------------


def status_message(code: int, message: str, retry_after: float | None = None) -> status_pb2.Status:
    """A ``google.rpc.Status`` (the OTLP error body), with a RetryInfo when to retry is known."""
    status = status_pb2.Status(code=code, message=message)
    if retry_after is not None:
        detail = AnyMessage()
        detail.Pack(retry_info(retry_after))
        status.details.append(detail)
    return status


def retry_info(retry_after: float) -> error_details_pb2.RetryInfo:
    seconds = math.floor(retry_after)
    delay = duration_pb2.Duration(seconds=seconds, nanos=int((retry_after - seconds) * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def retry_after_header(seconds: float) -> str:
    """The HTTP ``Retry-After`` value: whole seconds (RFC 9110), at least 1."""
    return str(max(1, math.ceil(seconds)))
