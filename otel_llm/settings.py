"""Every otel-llm setting, defined once.

Each setting is a keyword argument (of ``configure``, ``LLMSpanProcessor``, the services' config
objects and the CLI) and an environment variable, ``OTEL_LLM_`` + its name in capitals.
Precedence: argument > environment > config file (``otel-llm collector --config``) > default.
A bad value -- from any place -- logs a warning and falls back, because a typo in a telemetry
setting must never stop the application it observes.

The services read their settings through frozen config objects (``CollectorConfig``,
``CallLogConfig``), subclasses of ``Configured`` whose fields are bound to settings here, so each
setting is resolved once, where the object is built.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar, cast
from urllib.parse import unquote

from otel_llm import _semconv as sc

_logger = logging.getLogger(__name__)

T = TypeVar("T")

PREFIX = "OTEL_LLM_"
"""Every setting's environment variable is this prefix + its name in capitals."""

OFF = "none"
"""The value that turns off what a setting describes (a listener, the call log, its API). Such a
setting resolves it to None, so the rest of the package tests ``is None``."""


class Setting(Generic[T]):
    """One setting: its keyword name, environment variable, default and validation."""

    __slots__ = ("_default", "_factory", "check", "doc", "env", "fallback_env", "name", "parse")

    def __init__(
        self,
        name: str,
        *,
        parse: Callable[[str], T],
        check: Callable[[Any], T],
        doc: str,
        default: T | None = None,
        default_factory: Callable[[], T] | None = None,
        fallback_env: str | None = None,
    ):
        self.name = name
        self.env = PREFIX + name.upper()
        self.parse = parse
        """Turns the environment variable's text into a value; raises ValueError when it cannot."""
        self.check = check
        """Validates a given (or parsed) value; raises ValueError/TypeError if it is bad."""
        self.doc = doc
        self.fallback_env = fallback_env
        """A standard variable read when ``env`` is not set (e.g. the GenAI content-capture one)."""
        self._default = default
        self._factory = default_factory

    @property
    def default(self) -> T:
        """The value when nothing sets it; a ``default_factory`` is called on each read (a path
        under ``$XDG_STATE_HOME`` follows the environment of the moment, not of the import)."""
        return self._factory() if self._factory is not None else cast(T, self._default)

    def __repr__(self) -> str:
        return f"Setting({self.name!r})"

    def resolve(
        self,
        argument: Any = None,
        environ: Mapping[str, str] | None = None,
        file: Mapping[str, Any] | None = None,
    ) -> T:
        """The value in force: the argument if given and valid, else the environment, else the
        config file's value (``file``: setting name -> value), else the default."""
        if argument is not None:
            try:
                return self.check(argument)
            except (TypeError, ValueError) as exc:
                _logger.warning("otel-llm: ignoring %s=%r (%s)", self.name, argument, exc)
        environ = os.environ if environ is None else environ
        for env in (self.env, self.fallback_env):
            raw = environ.get(env) if env is not None else None
            if raw is not None and raw.strip() != "":
                try:
                    return self.check(self.parse(raw.strip()))
                except (TypeError, ValueError) as exc:
                    default = self.default
                    _logger.warning(
                        "otel-llm: ignoring %s=%r (%s); using %r", env, raw, exc, default
                    )
                    return default
        if file is not None and file.get(self.name) is not None:
            return self._from_file(file[self.name])
        return self.default

    def _from_file(self, value: Any) -> T:
        if isinstance(value, str):
            # Text goes through the same parser as the environment's ("256MiB", "k=v,k2=v2").
            try:
                value = self.parse(value)
            except (TypeError, ValueError) as exc:
                default = self.default
                _logger.warning(
                    "otel-llm: ignoring %s=%r in the config file (%s); using %r",
                    self.name,
                    value,
                    exc,
                    default,
                )
                return default
        return self.resolve(value, {})


# --- Config objects --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Binding:
    """A config field filled from a setting, and the command-line flag that sets it, if any."""

    field: str
    setting: Setting[Any]
    flag: str | None = None
    metavar: str | None = None


_BINDING = "otel_llm.setting"


def bound(setting: Setting[Any], flag: str | None = None, metavar: str | None = None) -> Any:
    """A field of a ``Configured`` dataclass whose value ``from_settings`` takes from
    ``setting``; ``flag`` is its option of the command that runs the service (a flag without a
    ``metavar`` is a switch: given alone, it means true)."""
    return dataclasses.field(metadata={_BINDING: (setting, flag, metavar)})


class Configured:
    """Base of the frozen config dataclasses: ``from_settings`` resolves each bound field's
    setting once (argument > environment > config file > default)."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @classmethod
    def bindings(cls) -> tuple[Binding, ...]:
        """The fields bound to a setting, in declaration order."""
        return tuple(
            Binding(field.name, *field.metadata[_BINDING])
            for field in dataclasses.fields(cls)
            if _BINDING in field.metadata
        )

    @classmethod
    def from_settings(
        cls,
        *,
        file: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Self:
        """The config with every bound field resolved: ``overrides`` (by field name; None:
        not given) > ``environ`` (default ``os.environ``) > ``file`` (by setting name) >
        default. Fields without a setting take their override or their default."""
        values = dict(overrides)
        for binding in cls.bindings():
            given = values.pop(binding.field, None)
            values[binding.field] = binding.setting.resolve(given, environ, file)
        return cls(**values)


# --- Value checks and parsers ----------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        return value

    return check


def _optional_port(value: Any) -> int | None:
    port = _int_at_least(0)(value)
    if port > 65535:
        raise ValueError("must be a TCP port (0-65535)")
    return port or None  # 0 means "off", as an explicit way to override the environment


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def _optional_text(value: Any) -> str | None:
    return _text(value)


def _path(value: Any) -> str:
    """A path, given as text or as a ``pathlib.Path``."""
    return _text(os.fspath(value) if isinstance(value, os.PathLike) else value)


def is_off(value: Any) -> bool:
    """Whether ``value`` is ``none`` (any case, spaces around): what turns a thing off."""
    return isinstance(value, str) and value.strip().lower() == OFF


def _or_off(check: Callable[[Any], T]) -> Callable[[Any], T | None]:
    """``check``, except that ``none`` is the value None: the thing is off."""

    def checked(value: Any) -> T | None:
        if is_off(value):
            return None
        return check(value)

    return checked


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError("expected true or false")


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


# Label parsing lives here, not in otel_llm.metrics: the settings are the foundation layer and
# import nothing above it.
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = {*sc.STANDARD_LABELS, sc.TOKEN_TYPE_LABEL, sc.REASON_LABEL, "le", "trace_id"}


def label_name_for(attribute: str) -> str:
    """The label name Prometheus' translation gives an attribute (non-alphanumerics -> ``_``)."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", attribute)
    return f"_{name}" if name[:1].isdigit() else name


def parse_extra_labels(value: Any) -> dict[str, str]:
    """``{label: attribute}`` from a mapping or from a list of attribute names.

    Raises ValueError/TypeError with the reason when a name is unusable.
    """
    if isinstance(value, Mapping):
        pairs: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
        pairs = (("", attribute) for attribute in value)
    else:
        raise TypeError("expected a mapping of label -> attribute or a list of attributes")
    result: dict[str, str] = {}
    for given, attribute in pairs:
        if not isinstance(attribute, str) or not attribute or not isinstance(given, str):
            raise TypeError(f"bad extra label {given!r} -> {attribute!r}")
        label = given or label_name_for(attribute)
        if not _LABEL_NAME.match(label) or label.startswith("__"):
            raise ValueError(f"{label!r} is not a valid Prometheus label name")
        if label in _RESERVED_LABELS:
            raise ValueError(f"{label!r} is a label otel-llm sets itself")
        result[label] = attribute
    return result


def _parse_extra_labels(raw: str) -> dict[str, str]:
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    mapping: dict[str, str] = {}
    for entry in entries:
        label, sep, attribute = entry.partition("=")
        mapping[label.strip() if sep else ""] = (attribute if sep else label).strip()
    return parse_extra_labels(mapping)


def _state_path(*parts: str) -> str:
    # Queue and call log are state that must survive a reboot (so not /tmp, often a tmpfs) and
    # need no root (so not /var/lib). XDG's state directory is that place: "data that should
    # persist between restarts but is not important enough for $XDG_DATA_HOME". A container or
    # system service sets it to a volume. Read when the default is, not at import.
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "otel-llm", *parts)


# --- The core: configure(), LLMSpanProcessor, the instrumentors ------------------------------

ENABLED: Setting[bool] = Setting(
    name="enabled",
    default=True,
    parse=_parse_bool,
    check=_bool,
    doc="Master switch. When false, ``configure()`` installs nothing.",
)
PRICE_OVERRIDES: Setting[str | None] = Setting(
    name="price_overrides",
    default=None,
    parse=str,
    check=_optional_text,
    doc="Path of a YAML or JSON file of price overrides and model aliases (see README).",
)
EXTRA_LABELS: Setting[dict[str, str]] = Setting(
    name="extra_labels",
    default={},
    parse=_parse_extra_labels,
    check=parse_extra_labels,
    doc=(
        "Span attributes added as metric labels. Environment form: "
        "``feature=otel_llm.context.feature,team=app.team``; a bare attribute name gets the "
        "label name Prometheus' translation gives it (dots become underscores)."
    ),
)
MAX_LABEL_VALUES: Setting[int] = Setting(
    name="max_label_values",
    default=200,
    parse=int,
    check=_int_at_least(1),
    doc=(
        "Distinct values kept per metric label (models, services, extra labels); later new "
        "values are reported as ``other`` so one bad attribute cannot explode cardinality."
    ),
)
MAX_TOKENS: Setting[int] = Setting(
    name="max_tokens",
    default=100_000_000,
    parse=int,
    check=_int_at_least(1),
    doc="A token count above this is absurd for one call: it is ignored and counted, not priced.",
)
PRICE_CACHE_SIZE: Setting[int] = Setting(
    name="price_cache_size",
    default=4096,
    parse=int,
    check=_int_at_least(1),
    doc="Number of (provider, model) price look-ups remembered; the oldest is forgotten first.",
)
PROMETHEUS_PORT: Setting[int | None] = Setting(
    name="prometheus_port",
    default=None,
    parse=int,
    check=_optional_port,
    doc="When set, ``configure()`` serves ``/metrics`` on this port (0 or unset: no endpoint).",
)
PROMETHEUS_HOST: Setting[str] = Setting(
    name="prometheus_host",
    default="127.0.0.1",
    parse=str,
    check=_text,
    doc="Address the ``/metrics`` endpoint binds; set 0.0.0.0 to let a remote Prometheus scrape.",
)


def _parse_capture(raw: str) -> bool:
    # The legacy true/false and the newer modes; otel-llm records content on spans only.
    mode = raw.upper()
    if mode in {"SPAN_ONLY", "SPAN_AND_EVENT"}:
        return True
    if mode in {"NO_CONTENT", "EVENT_ONLY"}:
        return False
    return _parse_bool(raw)


CAPTURE_CONTENT: Setting[bool] = Setting(
    name="capture_content",
    fallback_env="OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    default=False,
    parse=_parse_capture,
    check=_bool,
    doc=(
        "Record prompts and responses on spans (``gen_ai.input.messages``, "
        "``gen_ai.output.messages``). Off by default: content is often personal data. "
        "Also read from the standard OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT "
        "(true/false, SPAN_ONLY, SPAN_AND_EVENT, NO_CONTENT, EVENT_ONLY)."
    ),
)
CONTENT_MAX_LENGTH: Setting[int] = Setting(
    name="content_max_length",
    default=4096,
    parse=int,
    check=_int_at_least(1),
    doc="Characters kept of each captured content attribute; longer content is truncated.",
)
STREAM_INCLUDE_USAGE: Setting[bool] = Setting(
    name="stream_include_usage",
    default=False,
    parse=_parse_bool,
    check=_bool,
    doc=(
        "Add ``stream_options={'include_usage': True}`` to OpenAI streaming requests that do "
        "not set it, so streamed calls report token counts. Trade-off: the stream then ends "
        "with one extra chunk that has usage and no choices, which code iterating "
        "``chunk.choices[0]`` must tolerate. Off: such streams are marked usage-missing."
    ),
)

CORE: tuple[Setting[Any], ...] = (
    ENABLED,
    PRICE_OVERRIDES,
    EXTRA_LABELS,
    MAX_LABEL_VALUES,
    MAX_TOKENS,
    PRICE_CACHE_SIZE,
    PROMETHEUS_PORT,
    PROMETHEUS_HOST,
    CAPTURE_CONTENT,
    CONTENT_MAX_LENGTH,
    STREAM_INCLUDE_USAGE,
)

# --- The collector service (`otel-llm collector`) -------------------------------------------


def _address(value: Any) -> str:
    """``host:port`` (port 0: any free one; ``[::1]:4317`` for IPv6)."""
    text = _text(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port or none, got {text!r}")
    return text


_endpoint = _or_off(_address)
"""An address to listen on, or None: ``none`` turns the listener off."""


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return str(value)

    return check


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError("expected a mapping of header name -> value")
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not name.strip() or not isinstance(text, str):
            raise TypeError(f"bad header {name!r}: {text!r}")
        headers[name.strip().lower()] = text
    return headers


def _parse_headers(raw: str) -> dict[str, str]:
    """``k=v,k2=v2`` with URL-encoded values, as OTEL_EXPORTER_OTLP_HEADERS."""
    headers: dict[str, str] = {}
    for entry in raw.split(","):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected name=value, got {entry.strip()!r}")
        headers[unquote(name.strip())] = unquote(value.strip())
    return _headers(headers)


def _positive_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number of seconds, got {type(value).__name__}")
    if not 0 < value < float("inf"):
        raise ValueError("must be a number of seconds > 0")
    return float(value)


_SIZE_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 1000}
_SIZE_UNITS.update({"mb": 1000**2, "gb": 1000**3, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30})


def _parse_size(raw: str) -> int:
    """Bytes: ``4194304``, ``4MiB``, ``256 MiB`` (KiB/MiB/GiB binary, kB/MB/GB decimal)."""
    text = raw.strip().lower()
    number = text.rstrip("kmgib ")
    unit = text[len(number) :].strip()
    if unit not in _SIZE_UNITS or not number.isdigit():
        raise ValueError(f"expected a size like 4194304 or 256MiB, got {raw!r}")
    return int(number) * _SIZE_UNITS[unit]


def _size(value: Any) -> int:
    return _int_at_least(1024)(_parse_size(value) if isinstance(value, str) else value)


COLLECTOR_GRPC_ENDPOINT: Setting[str | None] = Setting(
    name="collector_grpc_endpoint",
    default="127.0.0.1:4317",
    parse=str,
    check=_endpoint,
    doc=(
        "Address the service's OTLP/gRPC receiver binds (``host:port``; ``0.0.0.0:4317`` for "
        "other hosts; ``none``: no gRPC receiver)."
    ),
)
COLLECTOR_HTTP_ENDPOINT: Setting[str | None] = Setting(
    name="collector_http_endpoint",
    default="127.0.0.1:4318",
    parse=str,
    check=_endpoint,
    doc=(
        "Address the service's OTLP/HTTP receiver (``POST /v1/traces``, protobuf or JSON) "
        "binds; ``none``: no HTTP receiver."
    ),
)
COLLECTOR_METRICS_ENDPOINT: Setting[str | None] = Setting(
    name="collector_metrics_endpoint",
    default="127.0.0.1:9464",
    parse=str,
    check=_endpoint,
    doc="Address of the service's ``/metrics`` and ``/health`` endpoints; ``none``: off.",
)
COLLECTOR_UPSTREAM_ENDPOINT: Setting[str | None] = Setting(
    name="collector_upstream_endpoint",
    default=None,
    parse=str,
    check=_optional_text,
    doc=(
        "Where the service forwards every span (Jaeger, Tempo, a Collector): ``host:port`` or "
        "``https://host:4317`` for gRPC, a URL (``http://host:4318``; ``/v1/traces`` is "
        "appended unless there) for http/protobuf. Unset: spans are priced and measured, then "
        "dropped (no queue)."
    ),
)
COLLECTOR_UPSTREAM_PROTOCOL: Setting[str] = Setting(
    name="collector_upstream_protocol",
    default="grpc",
    parse=str,
    check=_choice("grpc", "http/protobuf"),
    doc="OTLP protocol of the upstream: ``grpc`` or ``http/protobuf``.",
)
COLLECTOR_UPSTREAM_HEADERS: Setting[dict[str, str]] = Setting(
    name="collector_upstream_headers",
    default={},
    parse=_parse_headers,
    check=_headers,
    doc=(
        "Headers (gRPC metadata) sent upstream, e.g. an API key: ``k=v,k2=v2`` with "
        "URL-encoded values, as OTEL_EXPORTER_OTLP_HEADERS; a mapping in the config file."
    ),
)
COLLECTOR_UPSTREAM_INSECURE: Setting[bool] = Setting(
    name="collector_upstream_insecure",
    default=False,
    parse=_parse_bool,
    check=_bool,
    doc=(
        "gRPC upstream without TLS (as OTEL_EXPORTER_OTLP_INSECURE). An ``http://`` endpoint "
        "is plaintext and an ``https://`` one TLS whatever this says."
    ),
)
COLLECTOR_UPSTREAM_CA_FILE: Setting[str | None] = Setting(
    name="collector_upstream_ca_file",
    default=None,
    parse=str,
    check=_optional_text,
    doc="PEM file of the CA certificates that verify the upstream (default: the system's).",
)
COLLECTOR_UPSTREAM_CLIENT_CERT: Setting[str | None] = Setting(
    name="collector_upstream_client_cert",
    default=None,
    parse=str,
    check=_optional_text,
    doc="PEM client certificate for mutual TLS with the upstream (with the client key).",
)
COLLECTOR_UPSTREAM_CLIENT_KEY: Setting[str | None] = Setting(
    name="collector_upstream_client_key",
    default=None,
    parse=str,
    check=_optional_text,
    doc="PEM private key of the client certificate.",
)
COLLECTOR_UPSTREAM_TIMEOUT: Setting[float] = Setting(
    name="collector_upstream_timeout",
    default=10.0,
    parse=float,
    check=_positive_seconds,
    doc="Seconds one export to the upstream may take before it is retried.",
)
COLLECTOR_UPSTREAM_COMPRESSION: Setting[str] = Setting(
    name="collector_upstream_compression",
    default="none",
    parse=str,
    check=_choice("none", "gzip"),
    doc=(
        "Compression of requests to the upstream: ``none`` or ``gzip`` (less bandwidth, more "
        "CPU per span)."
    ),
)
COLLECTOR_QUEUE_DIR: Setting[str] = Setting(
    name="collector_queue_dir",
    default_factory=lambda: _state_path("queue"),
    parse=str,
    check=_path,
    doc=(
        "Directory of the disk-backed queue of spans not yet forwarded (default: "
        "``$XDG_STATE_HOME/otel-llm/queue``, i.e. ``~/.local/state/otel-llm/queue``: it must "
        "survive restarts, so not /tmp). One service per directory."
    ),
)
COLLECTOR_QUEUE_MAX_BYTES: Setting[int] = Setting(
    name="collector_queue_max_bytes",
    default=256 << 20,
    parse=_parse_size,
    check=_size,
    doc=(
        "Disk space the queue may use (``268435456``, ``256MiB``, ``1GiB``); when full, "
        "exporters are told to retry later (gRPC RESOURCE_EXHAUSTED, HTTP 503)."
    ),
)
COLLECTOR_MAX_REQUEST_BYTES: Setting[int] = Setting(
    name="collector_max_request_bytes",
    default=4 << 20,
    parse=_parse_size,
    check=_size,
    doc=(
        "Largest export request accepted, after decompression (default 4 MiB, the "
        "OpenTelemetry Collector's gRPC default); larger ones get RESOURCE_EXHAUSTED / 413."
    ),
)
COLLECTOR_FORWARD_WORKERS: Setting[int] = Setting(
    name="collector_forward_workers",
    default=2,
    parse=int,
    check=_int_at_least(1),
    doc="Export requests sent to the upstream at once.",
)
COLLECTOR_RETRY_INITIAL_BACKOFF: Setting[float] = Setting(
    name="collector_retry_initial_backoff",
    default=0.5,
    parse=float,
    check=_positive_seconds,
    doc="Seconds before the first retry of a failed export; the wait doubles per retry.",
)
COLLECTOR_RETRY_MAX_BACKOFF: Setting[float] = Setting(
    name="collector_retry_max_backoff",
    default=30.0,
    parse=float,
    check=_positive_seconds,
    doc=(
        "Longest wait between retries of a failed export (an upstream's Retry-After or "
        "RetryInfo may ask for more, up to 300 s)."
    ),
)
COLLECTOR_RETRY_AFTER: Setting[float] = Setting(
    name="collector_retry_after",
    default=5.0,
    parse=float,
    check=_positive_seconds,
    doc=(
        "Seconds a client refused because the queue is full (or the service is stopping) is "
        "told to wait before retrying (gRPC RetryInfo, HTTP Retry-After)."
    ),
)

COLLECTOR: tuple[Setting[Any], ...] = (
    COLLECTOR_GRPC_ENDPOINT,
    COLLECTOR_HTTP_ENDPOINT,
    COLLECTOR_METRICS_ENDPOINT,
    COLLECTOR_UPSTREAM_ENDPOINT,
    COLLECTOR_UPSTREAM_PROTOCOL,
    COLLECTOR_UPSTREAM_HEADERS,
    COLLECTOR_UPSTREAM_INSECURE,
    COLLECTOR_UPSTREAM_CA_FILE,
    COLLECTOR_UPSTREAM_CLIENT_CERT,
    COLLECTOR_UPSTREAM_CLIENT_KEY,
    COLLECTOR_UPSTREAM_TIMEOUT,
    COLLECTOR_UPSTREAM_COMPRESSION,
    COLLECTOR_QUEUE_DIR,
    COLLECTOR_QUEUE_MAX_BYTES,
    COLLECTOR_MAX_REQUEST_BYTES,
    COLLECTOR_FORWARD_WORKERS,
    COLLECTOR_RETRY_INITIAL_BACKOFF,
    COLLECTOR_RETRY_MAX_BACKOFF,
    COLLECTOR_RETRY_AFTER,
)

# --- The call log (store, query API, retention) ---------------------------------------------

# The store, its writer and retention (otel_llm/calllog/store.py, writer.py, retention.py).


def _seconds_or_off(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number of seconds, got {type(value).__name__}")
    if not 0 <= value < float("inf"):
        raise ValueError("must be a number of seconds >= 0")
    return float(value)


# Text even when it is ``none``: only the collector reads that as "off" (``is_off``); the
# exporter and ``otel-llm calls`` take the value as a path.
CALL_LOG_STORE: Setting[str] = Setting(
    name="call_log_store",
    # Beside the collector's queue: state that must survive restarts, writable without root.
    default_factory=lambda: _state_path("calls.db"),
    parse=str,
    check=_path,
    doc=(
        "Where the call log is stored: a SQLite file path (or ``sqlite:///path``), or a "
        "``postgresql://user@host/db`` URL shared by several collector replicas. Default: "
        "``$XDG_STATE_HOME/otel-llm/calls.db`` (``~/.local/state/otel-llm/calls.db``). "
        "``none``: ``otel-llm collector`` keeps no call log."
    ),
)
CALL_LOG_BATCH_SIZE: Setting[int] = Setting(
    name="call_log_batch_size",
    default=5000,
    parse=int,
    check=_int_at_least(1),
    doc=(
        "Calls written to the call log in one transaction, at most (under load; a quiet "
        "application's calls are written every flush interval)."
    ),
)
CALL_LOG_FLUSH_INTERVAL: Setting[float] = Setting(
    name="call_log_flush_interval",
    default=1.0,
    parse=float,
    check=_seconds_or_off,
    doc="Seconds a call may wait for its batch to fill before it is written anyway.",
)
CALL_LOG_MAX_PENDING: Setting[int] = Setting(
    name="call_log_max_pending",
    default=100_000,
    parse=int,
    check=_int_at_least(1),
    doc=(
        "Calls waiting to be written, at most; beyond, new calls are dropped, counted and "
        "logged (the store is down or too slow), never blocking the application."
    ),
)
CALL_LOG_CONTENT_DAYS: Setting[int] = Setting(
    name="call_log_content_days",
    default=30,
    parse=int,
    check=_int_at_least(1),
    doc="Days captured prompts and response previews are kept in the call log.",
)
CALL_LOG_RECORD_DAYS: Setting[int] = Setting(
    name="call_log_record_days",
    default=90,
    parse=int,
    check=_int_at_least(1),
    doc=(
        "Days call records are kept; daily aggregates (stats by day, week, model, ...) are "
        "kept without limit."
    ),
)
CALL_LOG_RETENTION_INTERVAL: Setting[float] = Setting(
    name="call_log_retention_interval",
    default=3600.0,
    parse=float,
    check=_seconds_or_off,
    doc="Seconds between two runs of the writer's retention job (0: never; use ``prune``).",
)

# The query API (otel_llm/calllog/api.py) and its client, `otel-llm calls --api`.
CALL_LOG_API_ENDPOINT: Setting[str | None] = Setting(
    name="call_log_api_endpoint",
    default="127.0.0.1:9466",
    parse=str,
    check=_endpoint,
    doc=(
        "Address the call-log query API (``/api/v1/calls``) binds, e.g. for ``otel-llm calls "
        "serve``; ``0.0.0.0:9466`` for other hosts; ``none``: not served."
    ),
)
CALL_LOG_API_KEYS_FILE: Setting[str | None] = Setting(
    name="call_log_api_keys_file",
    default=None,
    parse=str,
    check=_optional_text,
    doc=(
        "YAML or JSON file of the query API's keys: each a name, its ``sha256`` (or a plain "
        "``key``) and optionally the ``projects`` it may read (see README)."
    ),
)
CALL_LOG_API_KEYS: Setting[str | None] = Setting(
    name="call_log_api_keys",
    default=None,
    parse=str,
    check=_optional_text,
    doc=(
        "Query API keys given inline, each allowed every project: "
        "``name=key,name2=sha256:<hex>`` (added to those of the keys file)."
    ),
)
CALL_LOG_CLIENT_KEY: Setting[str | None] = Setting(
    name="call_log_client_key",
    default=None,
    parse=str,
    check=_optional_text,
    doc=(
        "The key ``otel-llm calls --api URL`` sends when ``--api-key`` is not given (a key on "
        "the command line is visible to other users of the machine)."
    ),
)
CALL_LOG_RATE_LIMIT_LIST: Setting[int] = Setting(
    name="call_log_rate_limit_list",
    default=60,
    parse=int,
    check=_int_at_least(0),
    doc="List and count requests per minute per API key (0: unlimited); more get 429.",
)
CALL_LOG_RATE_LIMIT_DETAILS: Setting[int] = Setting(
    name="call_log_rate_limit_details",
    default=120,
    parse=int,
    check=_int_at_least(0),
    doc="Requests per minute per API key for one call and its details (0: unlimited).",
)
CALL_LOG_RATE_LIMIT_STATS: Setting[int] = Setting(
    name="call_log_rate_limit_stats",
    default=30,
    parse=int,
    check=_int_at_least(0),
    doc="Stats requests per minute per API key (0: unlimited).",
)

CALL_LOG: tuple[Setting[Any], ...] = (
    CALL_LOG_STORE,
    CALL_LOG_BATCH_SIZE,
    CALL_LOG_FLUSH_INTERVAL,
    CALL_LOG_MAX_PENDING,
    CALL_LOG_CONTENT_DAYS,
    CALL_LOG_RECORD_DAYS,
    CALL_LOG_RETENTION_INTERVAL,
    CALL_LOG_API_ENDPOINT,
    CALL_LOG_API_KEYS_FILE,
    CALL_LOG_API_KEYS,
    CALL_LOG_CLIENT_KEY,
    CALL_LOG_RATE_LIMIT_LIST,
    CALL_LOG_RATE_LIMIT_DETAILS,
    CALL_LOG_RATE_LIMIT_STATS,
)

ALL: tuple[Setting[Any], ...] = (*CORE, *COLLECTOR, *CALL_LOG)
