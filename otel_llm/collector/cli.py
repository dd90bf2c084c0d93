"""``otel-llm collector``: run the collector service until SIGTERM or Ctrl-C.

Each setting comes from, in order: its flag, its ``OTEL_LLM_*`` variable, the ``--config`` file
(YAML mapping of setting names, e.g. ``collector_upstream_endpoint: jaeger:4317``; the
``collector_`` prefix may be left out), its default. A bad value or an unknown key in the file
warns and falls back; only a file that cannot be read (or is not a YAML mapping) is an error.

The flags are those of ``CollectorConfig``'s fields, of the pricing options below and of the
companion's config (the call log, which the composition root ``otel_llm/cli.py`` hands over:
the collector sits below the call log and does not import it).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from otel_llm import settings
from otel_llm._cli_types import CommandError
from otel_llm._setting import OFF, Binding, Configured, Setting
from otel_llm.collector.config import CollectorConfig

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from otel_llm.collector.enrich import EnrichedCall
    from otel_llm.collector.policies import CollectorPolicies
    from otel_llm.policies import PolicyFile, SpendHistory

_logger = logging.getLogger(__name__)

# The pricing options: keyword arguments of CollectorService named as their settings.
_PRICING: tuple[Binding, ...] = (
    Binding("price_overrides", settings.PRICE_OVERRIDES, "--price-overrides", "FILE"),
    Binding("extra_labels", settings.EXTRA_LABELS, "--extra-labels", "LABEL=ATTR,..."),
    Binding("max_label_values", settings.MAX_LABEL_VALUES, "--max-label-values", "N"),
    Binding("max_tokens", settings.MAX_TOKENS, "--max-tokens", "N"),
    Binding("price_cache_size", settings.PRICE_CACHE_SIZE, "--price-cache-size", "N"),
    Binding("agent_label", settings.AGENT_LABEL, "--agent-label"),
)


class Running(Protocol):
    """A companion's part, built (not started) from its config for one run of the service."""

    @property
    def sink(self) -> Callable[[Sequence[EnrichedCall]], None] | None:
        """The service's ``call_sink`` (None: none): stores the calls it is given before it
        returns, raises when it cannot (``otel_llm.collector.feed.CallSink``)."""

    def start(self, registry: CollectorRegistry) -> None:
        """Start before the service; its own metrics go on ``registry``. CommandError when
        it cannot."""

    def stop(self) -> None:
        """Stop after the service; idempotent."""

    def describe(self) -> str:
        """One line for the log, after the service's ready line."""

    def attach_policies(self, policies: PolicyFile) -> SpendHistory | None:
        """Before ``start``: the policies whose states it serves; returns where their past
        spend is read back (None: nowhere)."""


class Companion(Protocol):
    """Something ``otel-llm collector`` runs beside the service without knowing it (the call
    log): the fields of its ``config_type`` give flags and settings, ``open`` its part."""

    @property
    def config_type(self) -> type[Configured]: ...

    def open(self, config: Any) -> Running: ...


def add_parser(commands: Any, companion: Companion | None = None) -> argparse.ArgumentParser:
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
    for binding in _bindings(companion):
        if binding.flag is None:
            continue
        setting = binding.setting
        help = f"{_first_sentence(setting.doc)} [{setting.env}]"
        if binding.metavar is None:  # a switch: the flag alone means true
            parser.add_argument(
                binding.flag, dest=setting.name, action="store_const", const=True, help=help
            )
        else:
            parser.add_argument(
                binding.flag,
                dest=setting.name,
                type=_flag_type(setting),
                metavar=binding.metavar,
                help=help,
            )
    parser.set_defaults(handler=_run, command_parser=parser, companion=companion)
    return parser


def _bindings(companion: Companion | None = None) -> tuple[Binding, ...]:
    """Every setting the command reads, with its flag: the service's, the pricing options, the
    companion's."""
    extra = companion.config_type.bindings() if companion is not None else ()
    return (*CollectorConfig.bindings(), *_PRICING, *extra)


def _flag_type(setting: Setting[Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        # Validated, but returned as parsed: ``none`` must stay text here, as None would read
        # as "flag not given"; the config object turns it into None.
        try:
            value = setting.parse(text)
            setting.check(value)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    parse.__name__ = setting.name  # argparse names the type in its error message
    return parse


def _first_sentence(doc: str) -> str:
    # A sentence ends at ". " before a capital: "e.g. an API key" goes on.
    first = re.split(r"\.\s+(?=[A-Z])", doc, maxsplit=1)[0]
    return first.rstrip(".").replace("``", "").replace("%", "%%")


def load_config(path: str, companion: Companion | None = None) -> dict[str, Any]:
    """The settings of a YAML config file; CommandError when it cannot be read at all."""
    import yaml  # noqa: PLC0415 - only with --config: `otel-llm --version` needs no YAML

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
    known = {binding.setting.name for binding in _bindings(companion)}
    values: dict[str, Any] = {}
    for key, value in document.items():
        name = key if key in known else f"collector_{key}"
        if name not in known:
            _logger.warning("otel-llm collector: unknown setting %r in %s; ignored", key, path)
            continue
        values[name] = value
    return values


def resolve_settings(
    flags: Mapping[str, Any],
    config: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    bindings: Iterable[Binding] | None = None,
) -> dict[str, Any]:
    """Each setting's value by name (default: the service's and the pricing options'):
    flag > environment > config file > default."""
    return {
        binding.setting.name: binding.setting.resolve(
            flags.get(binding.setting.name), environ, config
        )
        for binding in (_bindings() if bindings is None else bindings)
    }


def _configured(
    config_type: type[Configured],
    flags: Mapping[str, Any],
    file: Mapping[str, Any],
    environ: Mapping[str, str],
) -> Any:
    """``config_type`` built from the flags (by setting name), the environment and the file."""
    given = {binding.field: flags.get(binding.setting.name) for binding in config_type.bindings()}
    return config_type.from_settings(file=file, environ=environ, **given)


def _run(args: argparse.Namespace) -> int:
    # The service (and grpcio) load only when the command runs: `otel-llm --version` needs none.
    from otel_llm.collector.service import CollectorService, StartError  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    companion: Companion | None = args.companion
    flags = vars(args)
    file = load_config(args.config, companion) if args.config else {}
    config = _configured(CollectorConfig, flags, file, os.environ)
    pricing = resolve_settings(flags, file, os.environ, _PRICING)
    part = (
        companion.open(_configured(companion.config_type, flags, file, os.environ))
        if companion is not None
        else None
    )
    policies = _open_policies(config.policies_file)
    history = part.attach_policies(policies.file) if part is not None and policies else None
    service = CollectorService(
        config,
        call_sink=part.sink if part else None,
        policies=policies,
        policy_history=history,
        span_sink=getattr(part, "span_sink", None) if part else None,
        **pricing,
    )
    stop = threading.Event()
    reload = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    def on_hangup(signum: int, frame: object) -> None:
        reload.set()
        stop.set()  # wakes the main loop, which reloads and goes on

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    if hasattr(signal, "SIGHUP"):
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
    try:
        # The companion first: its sink must be ready before the first request arrives.
        if part is not None:
            part.start(service.registry)
        try:
            service.start()
        except StartError as exc:
            raise CommandError(str(exc)) from exc
        _logger.info(
            "otel-llm collector: gRPC on %s, HTTP on %s, metrics on %s; upstream %s",
            _where(config.grpc_endpoint, service.grpc_port),
            _where(config.http_endpoint, service.http_port),
            _where(config.metrics_endpoint, service.metrics_port),
            config.upstream_endpoint or "none (spans are dropped after pricing)",
        )
        if part is not None:
            _logger.info("otel-llm collector: %s", part.describe())
        _wait(stop, reload, policies)
        _logger.info("otel-llm collector: stopping")
        # The service first (no new calls), then the companion.
        service.stop()
        if part is not None:
            part.stop()
    finally:
        service.stop()  # idempotent: after a failed start, or when stopped above
        if part is not None:
            part.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _wait(
    stop: threading.Event, reload: threading.Event, policies: CollectorPolicies | None
) -> None:
    """Until SIGTERM or Ctrl-C; SIGHUP (``reload`` set, ``stop`` to wake up) reloads."""
    while True:
        stop.wait(3600)
        if reload.is_set():
            reload.clear()
            stop.clear()
            if policies is not None:
                policies.file.reload()
            else:
                _logger.info("otel-llm collector: SIGHUP: no policy file to reload")
        elif stop.is_set():
            return


def _open_policies(path: str | None) -> CollectorPolicies | None:
    if path is None:
        return None
    # Only with a policy file: `otel-llm collector` without one loads none of it.
    from otel_llm.collector.policies import CollectorPolicies  # noqa: PLC0415
    from otel_llm.policies import PolicyFileError  # noqa: PLC0415

    try:
        policies = CollectorPolicies.open(path)
    except PolicyFileError as exc:
        raise CommandError(str(exc)) from None
    _logger.info(
        "otel-llm collector: %d policies from %s", len(policies.engine.policies.policies), path
    )
    return policies


def _where(endpoint: str | None, port: int | None) -> str:
    if endpoint is None or port is None:
        return OFF
    host = endpoint.rpartition(":")[0]
    return f"{host}:{port}"
