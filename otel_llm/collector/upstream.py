"""The upstream endpoint queued OTLP batches are sent to (gRPC or HTTP): one export attempt,
its outcome mapped to a ``SendResult``.

The payload is sent as the serialized bytes that were queued: it is never parsed again.

Which failures are retried follows the OTLP specification:

* gRPC: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, CANCELLED, OUT_OF_RANGE and DATA_LOSS are
  retried; RESOURCE_EXHAUSTED only when the server sends a RetryInfo (the specification's
  signal that it will recover) -- without one it is permanent, because gRPC also uses it for
  "message larger than the server's limit", which no retry can fix and which would otherwise
  hold the queue forever. Every other code is permanent.
* HTTP: 429, 502, 503 and 504 are retried (honouring Retry-After); every other non-2xx is
  permanent.
* A connection or TLS failure, or a timeout, is retried.
"""

from __future__ import annotations

import email.utils
import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypedDict, Unpack
from urllib.parse import urlsplit, urlunsplit

import grpc
import urllib3
from google.protobuf.message import DecodeError

# No stubs for google.rpc; unused-ignore keeps mypy quiet once the project configures them.
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped,unused-ignore]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_RETRYABLE_GRPC = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
# The Python SDK's gRPC exporter and receivers built on it put a bare RetryInfo under this key;
# others (Go, Java, the Collector) send it inside the standard grpc-status-details-bin.
_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
# gRPC's reconnect backoff otherwise grows to 120 s: an upstream back after an outage would sit
# unused for up to two minutes. Our own backoff already keeps a down upstream from being hammered.
_GRPC_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5000),
)
_GZIP_LEVEL = 6  # gzip.compress defaults to 9: several times slower for a few % smaller
COMPRESSIONS = ("gzip", "none")
PROTOCOLS = ("grpc", "http/protobuf")


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one export attempt."""

    ok: bool
    retryable: bool = False
    """For a failure: may the same batch succeed later?"""
    retry_after: float | None = None
    """Seconds the upstream asked us to wait (Retry-After, gRPC RetryInfo)."""
    rejected_spans: int = 0
    """For a success: spans the upstream refused (OTLP partial success)."""
    detail: str = ""


class Upstream(Protocol):
    """Where batches go. ``send`` never raises: every failure is a ``SendResult``."""

    def send(self, payload: bytes, timeout: float) -> SendResult: ...

    def close(self) -> None: ...


def _read(path: str | Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


def _check_compression(compression: str | None) -> bool:
    """True for gzip; ValueError for an unknown name (a typo must not silently disable it)."""
    name = (compression or "none").lower()
    if name not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r} (expected one of {COMPRESSIONS})")
    return name == "gzip"


def _partial_success(body: bytes, content_type: str = "application/x-protobuf") -> SendResult:
    """A success, with the spans a partial-success response says were rejected."""
    try:
        if content_type.startswith("application/json"):
            partial = json.loads(body or b"{}").get("partialSuccess", {})
            rejected = int(partial.get("rejectedSpans", 0))
            message = str(partial.get("errorMessage", ""))
        else:
            response = ExportTraceServiceResponse.FromString(body)
            rejected = response.partial_success.rejected_spans
            message = response.partial_success.error_message
    except (DecodeError, ValueError, TypeError, AttributeError):
        # The batch was accepted; an unreadable reply must not make us send it twice.
        return SendResult(True, detail="accepted (response body not understood)")
    return SendResult(True, rejected_spans=max(rejected, 0), detail=message)


# --- gRPC -----------------------------------------------------------------------------------------


def _retry_info(metadata: Any) -> float | None:
    """Seconds of the RetryInfo in gRPC trailing metadata, if any."""
    for key, value in metadata or ():
        try:
            if key == _RETRY_INFO_KEY:
                delay = RetryInfo.FromString(value).retry_delay
                return float(delay.ToTimedelta().total_seconds())
            if key == _STATUS_DETAILS_KEY:
                for detail in Status.FromString(value).details:
                    if detail.Is(RetryInfo.DESCRIPTOR):
                        info = RetryInfo()
                        detail.Unpack(info)
                        return float(info.retry_delay.ToTimedelta().total_seconds())
        except (DecodeError, TypeError, ValueError):
            continue
    return None


class GrpcUpstream:
    """OTLP/gRPC: ``TraceService/Export`` with the queued bytes as the request message.

    ``endpoint`` is ``host:port``, or ``http://host:port`` (plaintext) / ``https://host:port``
    (TLS), the scheme overriding ``insecure``. TLS verifies the server against ``ca_file`` (the
    system roots when None); ``client_cert`` and ``client_key`` add a client certificate.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        insecure: bool = False,
        ca_file: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        headers: Mapping[str, str] | None = None,
        compression: str | None = None,
        timeout: float = 10.0,
    ):
        self.timeout = timeout
        """Seconds one export may take (the forwarder's default per-send timeout)."""
        target = endpoint
        if "://" in endpoint:
            parts = urlsplit(endpoint)
            insecure = parts.scheme == "http"
            target = parts.netloc
        self.endpoint = target
        gzip_on = _check_compression(compression)
        if (client_cert is None) != (client_key is None):
            raise ValueError("client_cert and client_key go together")
        # gRPC metadata keys must be lower case; a capitalised one would fail every call.
        self._metadata = tuple((key.lower(), value) for key, value in (headers or {}).items())
        grpc_compression = grpc.Compression.Gzip if gzip_on else grpc.Compression.NoCompression
        if insecure:
            self._channel = grpc.insecure_channel(
                target, options=_GRPC_OPTIONS, compression=grpc_compression
            )
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(ca_file),
                private_key=_read(client_key),
                certificate_chain=_read(client_cert),
            )
            self._channel = grpc.secure_channel(
                target, credentials, options=_GRPC_OPTIONS, compression=grpc_compression
            )
        # No serializers: the payload goes out as the bytes the queue holds, and the response
        # comes back as bytes (parsed only for its partial_success).
        self._export = self._channel.unary_unary(
            _EXPORT_METHOD, request_serializer=None, response_deserializer=None
        )

    def send(self, payload: bytes, timeout: float) -> SendResult:
        try:
            response = self._export(payload, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code()
            retry_after = _retry_info(error.trailing_metadata())
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                retryable = retry_after is not None
            else:
                retryable = code in _RETRYABLE_GRPC
            detail = f"gRPC {getattr(code, 'name', code)}: {error.details()}"
            return SendResult(False, retryable, retry_after, detail=detail)
        except Exception as exc:  # noqa: BLE001 - never raise into the forwarder
            return SendResult(False, True, detail=f"gRPC call failed: {exc!r}")
        return _partial_success(response)

    def close(self) -> None:
        self._channel.close()


# --- HTTP -----------------------------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def traces_url(endpoint: str, *, insecure: bool = False) -> str:
    """The OTLP/HTTP traces URL for ``endpoint``: ``/v1/traces`` appended to its path unless it
    already ends so; ``http://`` (``insecure``) or ``https://`` added when there is no scheme."""
    if "://" not in endpoint:
        endpoint = ("http://" if insecure else "https://") + endpoint
    parts = urlsplit(endpoint)
    path = parts.path
    if not path.endswith("/v1/traces"):
        path = path.rstrip("/") + "/v1/traces"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class HttpUpstream:
    """OTLP/HTTP: POST ``application/x-protobuf`` to ``url`` (the full traces URL).

    For ``https://`` the server is verified against ``ca_file`` (the system roots when None);
    ``client_cert`` and ``client_key`` add a client certificate.
    """

    def __init__(
        self,
        url: str,
        *,
        ca_file: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        headers: Mapping[str, str] | None = None,
        compression: str | None = None,
        timeout: float = 10.0,
        connections: int = 4,
    ):
        self.timeout = timeout
        """Seconds one export may take (the forwarder's default per-send timeout)."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"an OTLP/HTTP URL starts with http:// or https://, not {url!r}")
        if (client_cert is None) != (client_key is None):
            raise ValueError("client_cert and client_key go together")
        self.url = url
        self._gzip = _check_compression(compression)
        self._headers = {**(headers or {}), "Content-Type": "application/x-protobuf"}
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        tls: dict[str, Any] = {}
        if url.startswith("https:"):
            tls = {
                "cert_reqs": "CERT_REQUIRED",
                "ca_certs": None if ca_file is None else str(ca_file),
                "cert_file": None if client_cert is None else str(client_cert),
                "key_file": None if client_key is None else str(client_key),
            }
        # One pool for the one host, big enough that concurrent workers each keep a connection.
        self._pool = urllib3.PoolManager(num_pools=1, maxsize=connections, **tls)

    def send(self, payload: bytes, timeout: float) -> SendResult:
        body = gzip.compress(payload, compresslevel=_GZIP_LEVEL) if self._gzip else payload
        try:
            response = self._pool.request(
                "POST",
                self.url,
                body=body,
                headers=self._headers,
                timeout=urllib3.Timeout(total=timeout),
                retries=False,  # retrying is the forwarder's job, with its backoff
                redirect=False,
            )
        except Exception as exc:  # noqa: BLE001 - connection, TLS, timeout: all retryable
            return SendResult(False, True, detail=f"HTTP request failed: {exc!r}")
        status = response.status
        content_type = response.headers.get("Content-Type", "")
        if 200 <= status < 300:
            return _partial_success(response.data, content_type)
        text = response.data[:200].decode("utf-8", "replace").strip()
        detail = f"HTTP {status}: {text}"
        if status in _RETRYABLE_HTTP:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            return SendResult(False, True, retry_after, detail=detail)
        return SendResult(False, False, detail=detail)

    def close(self) -> None:
        self._pool.clear()


class UpstreamOptions(TypedDict, total=False):
    """``make_upstream``'s options, each passed on to ``GrpcUpstream`` or ``HttpUpstream``."""

    ca_file: str | Path | None
    client_cert: str | Path | None
    client_key: str | Path | None
    headers: Mapping[str, str] | None
    compression: str | None
    timeout: float


def make_upstream(
    endpoint: str, protocol: str, *, insecure: bool = False, **options: Unpack[UpstreamOptions]
) -> Upstream:
    """The upstream for ``protocol`` (``grpc`` or ``http/protobuf``); for HTTP, ``endpoint`` is
    a base URL (``/v1/traces`` appended, see ``traces_url``)."""
    if protocol == "grpc":
        return GrpcUpstream(endpoint, insecure=insecure, **options)
    if protocol == "http/protobuf":
        return HttpUpstream(traces_url(endpoint, insecure=insecure), **options)
    raise ValueError(f"unknown upstream protocol {protocol!r} (expected one of {PROTOCOLS})")
