"""Decoding OTLP requests under hostile input (issue 10, findings 4 and 10): multi-member gzip
in linear time with the size limit checked as it streams, deeply nested OTLP/JSON refused with
a 400, and the receiver's concurrency limit applied before any decoding."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
from google.rpc import status_pb2  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry

from otel_llm.collector.codec import (
    MAX_JSON_DEPTH,
    TooLarge,
    UnsupportedEncoding,
    decompress,
    parse_json,
)
from otel_llm.collector.http_receiver import HttpReceiver
from otel_llm.collector.telemetry import PROM_REFUSED, CollectorMetrics

EMPTY_MEMBER = gzip.compress(b"")


def cpu_seconds(body: bytes) -> float:
    """The least CPU time of three decodings (the others include scheduling noise)."""
    times = []
    for _ in range(3):
        started = time.process_time()
        decompress(body, "gzip", 4 << 20)
        times.append(time.process_time() - started)
    return min(times)


def test_gzip_members_decode_in_linear_time() -> None:
    small = cpu_seconds(EMPTY_MEMBER * 50_000)
    large = cpu_seconds(EMPTY_MEMBER * 100_000)
    ratio = large / max(small, 1e-6)
    print(f"50k members {small:.3f} s, 100k members {large:.3f} s: doubling costs x{ratio:.2f}")
    assert ratio < 3.5  # quadratic would be x4 (it took 29.8 s for 200k members before)
    assert cpu_seconds(EMPTY_MEMBER * 200_000) < 1.0


def test_members_of_every_size_decode_whole_and_the_limit_spans_them() -> None:
    contents = [bytes([n % 251]) * (n * 7919 % 70_000) for n in range(60)]
    body = b"".join(gzip.compress(content) for content in contents)
    whole = b"".join(contents)
    assert decompress(body, "gzip", len(whole)) == whole
    # One byte over the limit, wherever in the members it falls, is too large.
    with pytest.raises(TooLarge):
        decompress(body, "gzip", len(whole) - 1)
    # A bomb stops at the limit instead of inflating whole.
    bomb = gzip.compress(b"\0" * (64 << 20))
    started = time.process_time()
    with pytest.raises(TooLarge):
        decompress(bomb, "gzip", 1 << 20)
    assert time.process_time() - started < 0.5
    with pytest.raises(zlib.error, match="truncated"):
        decompress(body[:-3], "gzip", len(whole))
    with pytest.raises(zlib.error):
        decompress(body + b"garbage", "gzip", 1 << 30)
    assert decompress(zlib.compress(b"one stream") + b"ignored", "deflate", 100) == b"one stream"
    assert decompress(b"as is", "identity", 100) == b"as is"
    with pytest.raises(UnsupportedEncoding):
        decompress(b"", "br", 100)


def nested(depth: int) -> bytes:
    """An OTLP/JSON request whose document nests ``depth`` levels (an unknown field holds it:
    ignored by OTLP, so only the nesting can refuse it)."""
    return b'{"resourceSpans": [], "x": ' + b'{"a": ' * (depth - 1) + b"1" + b"}" * depth


def test_json_nesting_is_bounded() -> None:
    assert parse_json(nested(MAX_JSON_DEPTH)) == ExportTraceServiceRequest()
    for depth in (MAX_JSON_DEPTH + 1, 5_000, 200_000):
        with pytest.raises(ValueError, match="nested deeper"):
            parse_json(nested(depth))
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json(b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


# --- through the HTTP receiver ------------------------------------------------------------------


class Receiver:
    """An HttpReceiver on a free port whose ``accept`` can be held."""

    def __init__(self, max_concurrent: int = 64):
        self.registry = CollectorRegistry()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.accepted: list[ExportTraceServiceRequest] = []
        self.receiver = HttpReceiver(
            self._accept,
            CollectorMetrics(self.registry),
            endpoint="127.0.0.1:0",
            max_request_bytes=4 << 20,
            max_concurrent=max_concurrent,
        )

    def _accept(self, request: ExportTraceServiceRequest, payload: object, transport: str) -> None:
        self.entered.set()
        self.release.wait(10)
        self.accepted.append(request)

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.receiver.port, timeout=10)
        connection.request("POST", "/v1/traces", body, headers)
        response = connection.getresponse()
        answer = response.read()
        connection.close()
        return response.status, answer

    def refused(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            PROM_REFUSED, {"transport": "http", "reason": reason}
        )
        return value or 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver(max_concurrent=1)
    served.receiver.start()
    yield served
    served.release.set()
    served.receiver.stop()


def test_deep_json_and_many_members_over_http(receiver: Receiver) -> None:
    status, body = receiver.post(nested(10_000), {"Content-Type": "application/json"})
    assert status == 400
    assert "nested deeper" in json.loads(body)["message"]
    assert receiver.refused("malformed") == 1
    started = time.monotonic()
    status, _ = receiver.post(
        EMPTY_MEMBER * 200_000,
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert status == 200
    assert time.monotonic() - started < 5
    assert receiver.accepted == [ExportTraceServiceRequest()]


def test_the_concurrency_limit_applies_before_decoding(receiver: Receiver) -> None:
    receiver.release.clear()
    protobuf = {"Content-Type": "application/x-protobuf"}
    first = threading.Thread(target=receiver.post, args=(b"", protobuf))
    first.start()
    assert receiver.entered.wait(10)
    # The only slot is taken: a second request is refused before its body is decoded (corrupt
    # gzip would be a 400 if it were decoded first).
    status, body = receiver.post(b"not gzip", {**protobuf, "Content-Encoding": "gzip"})
    assert status == 503
    assert status_pb2.Status.FromString(body).message == "too many requests at once"
    assert receiver.refused("queue_full") == 1
    assert receiver.refused("malformed") == 0
    receiver.release.set()
    first.join(10)
    assert receiver.post(b"not gzip", {**protobuf, "Content-Encoding": "gzip"})[0] == 400


MALFORMED_JSON = [
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [1]}]}]}',  # a span that is no object
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"links": ["x"]}]}]}]}',
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": Infinity}]}]}]}',
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"status": {"code": 1e999}}]}]}]}',
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xed\xa0\x80"}]}]}]}',
]


@pytest.mark.parametrize("body", MALFORMED_JSON)
def test_malformed_otlp_json_is_a_400_not_a_500(receiver: Receiver, body: bytes) -> None:
    """Found in review: a non-object span or link (AttributeError), Infinity or 1e999 as an
    integer (OverflowError) and a surrogate's bytes each answered 500 with a traceback."""
    status, answer = receiver.post(body, {"Content-Type": "application/json"})
    assert status == 400
    assert json.loads(answer)["message"].startswith("malformed request: ")
    assert receiver.accepted == []


def test_lone_surrogates_in_otlp_json_become_replacement_characters(receiver: Receiver) -> None:
    """Found in review: protobuf's JSON parser failed on a lone surrogate with a SystemError (a
    500); its message, quoting one, could not be encoded in the answer either. Text from
    outside is made safe as the spans' other text is (``text.py``): the request is taken."""
    body = (
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "a\\ud800b", '
        b'"attributes": [{"key": "k\\udc00", "value": {"stringValue": "\\ud83d\\ude00"}}]}]}]}]}'
    )
    status, _ = receiver.post(body, {"Content-Type": "application/json"})
    assert status == 200
    (request,) = receiver.accepted
    (span,) = request.resource_spans[0].scope_spans[0].spans
    assert span.name == "a\ufffdb"
    assert span.attributes[0].key == "k\ufffd"
    assert span.attributes[0].value.string_value == "\U0001f600"  # a pair is one character
    status, answer = receiver.post(
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "\\ud800"}]}]}]}',
        {"Content-Type": "application/json"},
    )
    assert status == 400
    assert "\ufffd" in json.loads(answer)["message"]
