"""``otel-llm collector``: run the collector service until SIGTERM or Ctrl-C.

Each setting comes from, in order: its flag, its ``OTEL_LLM_*`` variable, the ``--config`` file
(YAML mapping of setting names, e.g. ``collector_upstream_endpoint: jaeger:4317``; the
``collector_`` prefix may be left out), its default. A bad value or an unknown key in the file
warns and falls back; only a file that cannot be read (or is not a YAML mapping) is an error.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from otel_llm import settings
from otel_llm._cli_types import CommandError
from otel_llm.settings import Setting

if TYPE_CHECKING:
    from otel_llm.calllog.service import CallLogService

_logger = logging.getLogger(__name__)

# (flag, setting): the service's keyword argument is the setting name minus ``collector_``.
_FLAGS: tuple[tuple[str, Setting[Any], str], ...] = (
    ("--grpc-endpoint", settings.COLLECTOR_GRPC_ENDPOINT, "HOST:PORT"),
    ("--http-endpoint", settings.COLLECTOR_HTTP_ENDPOINT, "HOST:PORT"),
    ("--metrics-endpoint", settings.COLLECTOR_METRICS_ENDPOINT, "HOST:PORT"),
    ("--upstream", settings.COLLECTOR_UPSTREAM_ENDPOINT, "ENDPOINT"),
    ("--upstream-protocol", settings.COLLECTOR_UPSTREAM_PROTOCOL, "PROTOCOL"),
    ("--upstream-headers", settings.COLLECTOR_UPSTREAM_HEADERS, "K=V,..."),
    ("--upstream-ca-file", settings.COLLECTOR_UPSTREAM_CA_FILE, "FILE"),
    ("--upstream-client-cert", settings.COLLECTOR_UPSTREAM_CLIENT_CERT, "FILE"),
    ("--upstream-client-key", settings.COLLECTOR_UPSTREAM_CLIENT_KEY, "FILE"),
    ("--upstream-timeout", settings.COLLECTOR_UPSTREAM_TIMEOUT, "SECONDS"),
    ("--upstream-compression", settings.COLLECTOR_UPSTREAM_COMPRESSION, "none|gzip"),
    ("--queue-dir", settings.COLLECTOR_QUEUE_DIR, "DIR"),
    ("--queue-max-bytes", settings.COLLECTOR_QUEUE_MAX_BYTES, "SIZE"),
    ("--max-request-bytes", settings.COLLECTOR_MAX_REQUEST_BYTES, "SIZE"),
    ("--forward-workers", settings.COLLECTOR_FORWARD_WORKERS, "N"),
    ("--retry-initial-backoff", settings.COLLECTOR_RETRY_INITIAL_BACKOFF, "SECONDS"),
    ("--retry-max-backoff", settings.COLLECTOR_RETRY_MAX_BACKOFF, "SECONDS"),
    ("--retry-after", settings.COLLECTOR_RETRY_AFTER, "SECONDS"),
    ("--price-overrides", settings.PRICE_OVERRIDES, "FILE"),
    ("--extra-labels", settings.EXTRA_LABELS, "LABEL=ATTR,..."),
    ("--max-label-values", settings.MAX_LABEL_VALUES, "N"),
    ("--max-tokens", settings.MAX_TOKENS, "N"),
    ("--price-cache-size", settings.PRICE_CACHE_SIZE, "N"),
)
_BOOL_FLAGS = (("--upstream-insecure", settings.COLLECTOR_UPSTREAM_INSECURE),)
# The call log (otel_llm.calllog.service.CallLogService): keyword = setting name minus
# ``call_log_``. On by default; ``--call-log-store none`` turns it off.
_CALL_LOG_FLAGS: tuple[tuple[str, Setting[Any], str], ...] = (
    ("--call-log-store", settings.CALL_LOG_STORE, "PATH_OR_URL|none"),
    ("--call-log-api-endpoint", settings.CALL_LOG_API_ENDPOINT, "HOST:PORT|none"),
    ("--call-log-api-keys-file", settings.CALL_LOG_API_KEYS_FILE, "FILE"),
    ("--call-log-api-keys", settings.CALL_LOG_API_KEYS, "NAME=KEY,..."),
)
# Call-log settings without a flag: still read from the environment and the config file.
_CALL_LOG_OTHERS: tuple[Setting[Any], ...] = (
    settings.CALL_LOG_BATCH_SIZE,
    settings.CALL_LOG_FLUSH_INTERVAL,
    settings.CALL_LOG_MAX_PENDING,
    settings.CALL_LOG_CONTENT_DAYS,
    settings.CALL_LOG_RECORD_DAYS,
    settings.CALL_LOG_RETENTION_INTERVAL,
)
_CALL_LOG_PREFIX = "call_log_"
_SETTINGS: tuple[Setting[Any], ...] = (
    *(setting for _, setting, _ in _FLAGS),
    *(setting for _, setting in _BOOL_FLAGS),
    *(setting for _, setting, _ in _CALL_LOG_FLAGS),
    *_CALL_LOG_OTHERS,
)


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``collector`` on the ``otel-llm`` subparsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "collector",
        help="an OTLP service that prices GenAI spans from any language and forwards them",
        description=(
            "Receive OTLP traces (gRPC and HTTP), price and measure every GenAI span with the "
            "same core as LLMSpanProcessor, serve /metrics and /health, and forward all spans "
            "-- with their cost -- to an upstream OTLP endpoint through a disk-backed queue. "
            "Every LLM call is stored in the call log (--call-log-store; 'none': off), whose "
            "query API is served when API keys are configured. "
            "Flags win over OTEL_LLM_* variables, which win over --config."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="YAML file of settings (keys: setting names, e.g. collector_upstream_endpoint)",
    )
    for flag, setting, metavar in (*_FLAGS, *_CALL_LOG_FLAGS):
        parser.add_argument(
            flag,
            dest=setting.name,
            type=_flag_type(setting),
            default=None,
            metavar=metavar,
            help=f"{_first_sentence(setting.doc)} [{setting.env}]",
        )
    for flag, setting in _BOOL_FLAGS:
        parser.add_argument(
            flag,
            dest=setting.name,
            action="store_const",
            const=True,
            default=None,
            help=f"{_first_sentence(setting.doc)} [{setting.env}]",
        )
    parser.set_defaults(handler=_run, command_parser=parser)
    return parser


def _flag_type(setting: Setting[Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return setting.check(setting.parse(text))
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = setting.name  # argparse names the type in its error message
    return parse


def _first_sentence(doc: str) -> str:
    # A sentence ends at ". " before a capital: "e.g. an API key" goes on.
    first = re.split(r"\.\s+(?=[A-Z])", doc, maxsplit=1)[0]
    return first.rstrip(".").replace("``", "").replace("%", "%%")


def load_config(path: str) -> dict[str, Any]:
    """The settings of a YAML config file; CommandError when it cannot be read at all."""
    import yaml  # noqa: PLC0415 - only with --config

    try:
        with open(path, encoding="utf-8") as file:
            document = yaml.safe_load(file)
    except OSError as exc:
        raise CommandError(f"cannot read the config file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise CommandError(f"the config file {path} is not valid YAML: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise CommandError(f"the config file {path} must be a mapping of setting names")
    known = {setting.name: setting for setting in _SETTINGS}
    values: dict[str, Any] = {}
    for key, value in document.items():
        name = key if key in known else f"collector_{key}"
        if name not in known:
            _logger.warning("otel-llm collector: unknown setting %r in %s; ignored", key, path)
            continue
        values[name] = value
    return values


def resolve_settings(
    flags: Mapping[str, Any], config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Every setting's value: flag > environment > config file > default."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in _SETTINGS:
        flag = flags.get(setting.name)
        raw_env = environ.get(setting.env)
        if flag is not None:
            values[setting.name] = setting.resolve(flag, environ)
        elif (raw_env is not None and raw_env.strip()) or setting.name not in config:
            values[setting.name] = setting.resolve(None, environ)
        else:
            values[setting.name] = _from_config(setting, config[setting.name])
    return values


def _from_config(setting: Setting[Any], value: Any) -> Any:
    if isinstance(value, str):
        # Text goes through the same parser as the environment's ("256MiB", "k=v,k2=v2").
        try:
            value = setting.parse(value)
        except ValueError as exc:
            _logger.warning(
                "otel-llm: ignoring %s=%r in the config file (%s); using %r",
                setting.name,
                value,
                exc,
                setting.default,
            )
            return setting.default
    return setting.resolve(value, {})


def _run(args: argparse.Namespace) -> int:
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from otel_llm.calllog import telemetry as calllog_telemetry  # noqa: PLC0415
    from otel_llm.calllog.service import CallLogStartError  # noqa: PLC0415
    from otel_llm.collector.service import CollectorService, StartError  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_config(args.config) if args.config else {}
    values = resolve_settings(vars(args), config)
    call_log = _call_log(values)
    keywords = {
        name.removeprefix("collector_"): value
        for name, value in values.items()
        if not name.startswith(_CALL_LOG_PREFIX)
    }
    service = CollectorService(
        **keywords, call_sink=call_log.sink if call_log is not None else None
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            # The call log first: its sink must be ready before the first request arrives.
            if call_log is not None:
                call_log.start()
                if call_log.writer is not None:  # its losses belong on the service's /metrics
                    calllog_telemetry.register(call_log.writer, service.registry)
            service.start()
        except (StartError, CallLogStartError) as exc:
            raise CommandError(str(exc)) from exc
        _logger.info(
            "otel-llm collector: gRPC on %s, HTTP on %s, metrics on %s; upstream %s",
            _where(values["collector_grpc_endpoint"], service.grpc_port),
            _where(values["collector_http_endpoint"], service.http_port),
            _where(values["collector_metrics_endpoint"], service.metrics_port),
            values["collector_upstream_endpoint"] or "none (spans are dropped after pricing)",
        )
        _log_call_log(call_log)
        while not stop.wait(3600):
            pass
        _logger.info("otel-llm collector: stopping")
        # Collector first (no new calls), then the call log: its writer flushes the last
        # accepted calls before its API goes.
        service.stop()
        if call_log is not None and not call_log.stop():
            _logger.warning("otel-llm collector: some calls were not written to the call log")
    finally:
        service.stop()  # idempotent: after a failed start, or when stopped above
        if call_log is not None:
            call_log.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _call_log(values: Mapping[str, Any]) -> CallLogService | None:
    """The call log service the settings describe, not started; None when it is off."""
    from otel_llm.calllog.service import DISABLED, CallLogService  # noqa: PLC0415

    if values["call_log_store"] == DISABLED:
        return None
    keywords = {
        name.removeprefix(_CALL_LOG_PREFIX): value
        for name, value in values.items()
        if name.startswith(_CALL_LOG_PREFIX)
    }
    return CallLogService(**keywords)


def _log_call_log(call_log: CallLogService | None) -> None:
    if call_log is None:
        _logger.info("otel-llm collector: call log off (--call-log-store none)")
    elif call_log.api_url is not None:
        _logger.info(
            "otel-llm collector: call log in %s; query API on %s",
            call_log.store_name,
            call_log.api_url,
        )
    else:
        _logger.info(
            "otel-llm collector: call log in %s; query API not served: %s",
            call_log.store_name,
            call_log.api_off_reason,
        )


def _where(endpoint: str, port: int | None) -> str:
    if port is None:
        return "none"
    host = endpoint.rpartition(":")[0]
    return f"{host}:{port}"
