"""``configure()``: one call that makes a traced application's LLM calls priced and measured.

With an SDK TracerProvider already installed (``opentelemetry-instrument``, or the app's own),
the processor is put in front of the provider's processors so that the spans they export carry
their cost. That reaches into the SDK's ``_active_span_processor`` -- tested against the SDK
versions in the test matrix; when the internals differ, it degrades to metrics only, with a
warning. With no SDK provider, it creates one exporting over OTLP from the standard
``OTEL_EXPORTER_OTLP_*`` variables.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from otel_llm import enforcement, settings
from otel_llm.exposition import start_metrics_server
from otel_llm.localpolicies import LocalPolicies, enforce_locally
from otel_llm.policies.load import PolicyFileError
from otel_llm.pricing import Discount, PriceOverride
from otel_llm.processor import LLMSpanProcessor

_logger = logging.getLogger(__name__)

# The processor configure() attached to each provider: a second call returns it instead of
# attaching another, whatever the provider's internals look like.
_configured: weakref.WeakKeyDictionary[TracerProvider, LLMSpanProcessor] = (
    weakref.WeakKeyDictionary()
)
_configured_lock = threading.Lock()


def configure(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    registry: CollectorRegistry | None = None,
    price_overrides: str | Path | Sequence[PriceOverride | Discount] | None = None,
    extra_labels: Mapping[str, str] | Sequence[str] | None = None,
    max_label_values: int | None = None,
    max_tokens: int | None = None,
    price_cache_size: int | None = None,
    rollup_max_open: int | None = None,
    agent_label: bool | None = None,
    billing_gateways: Sequence[str] | None = None,
    prometheus_port: int | None = None,
    prometheus_host: str | None = None,
    policy_enforce: str | None = None,
    policies: str | Path | None = None,
    policy_api_url: str | None = None,
    policy_api_key: str | None = None,
    policy_refresh_interval: float | None = None,
    policy_fail_mode: str | None = None,
    enabled: bool | None = None,
) -> LLMSpanProcessor | None:
    """Attach an ``LLMSpanProcessor`` to the application's tracing; returns it (None if disabled).

    Calling it again returns the processor already attached. Every argument has an
    ``OTEL_LLM_*`` variable (see ``otel_llm.settings``); the argument wins.
    """
    if not settings.ENABLED.resolve(enabled):
        return None
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = _new_provider()
        trace.set_tracer_provider(provider)

    extra: list[SpanProcessor] = []

    def make(*downstream: SpanProcessor) -> LLMSpanProcessor:
        return LLMSpanProcessor(
            *downstream,
            *extra,
            registry=registry,
            meter_provider=meter_provider,
            price_overrides=price_overrides,
            extra_labels=extra_labels,
            max_label_values=max_label_values,
            max_tokens=max_tokens,
            price_cache_size=price_cache_size,
            rollup_max_open=rollup_max_open,
            agent_label=agent_label,
            billing_gateways=billing_gateways,
        )

    blocking = settings.POLICY_ENFORCE.resolve(policy_enforce) == "block"
    policy_file = settings.POLICIES.resolve(policies)
    interval = settings.POLICY_REFRESH_INTERVAL.resolve(policy_refresh_interval)
    with _configured_lock:
        processor = _configured.get(provider)
        if processor is not None:
            return processor
        local = None
        if blocking and policy_file is not None:
            local = _local_policies(provider, policy_file, interval, policy_api_url)
            if local is not None:
                extra.append(local)  # behind the processor: it sees each call priced
        processor = _wrap_exporting_processors(provider, make)
        _configured[provider] = processor
    if local is not None:
        local.pricer = processor.pricer
        if local not in processor.downstream:  # the app's own processor: after it, then
            provider.add_span_processor(local)
        _register(registry, local.enforcer)
    elif blocking:
        _enforce(
            provider,
            registry,
            settings.POLICY_API_URL.resolve(policy_api_url),
            settings.POLICY_API_KEY.resolve(policy_api_key),
            interval,
            settings.POLICY_FAIL_MODE.resolve(policy_fail_mode) == "closed",
        )
    elif policy_file is not None:
        _logger.warning(
            "otel-llm: policies=%s is enforced with policy_enforce=block only; not evaluated",
            policy_file,
        )
    port = settings.PROMETHEUS_PORT.resolve(prometheus_port)
    if port is not None:
        try:
            start_metrics_server(port, settings.PROMETHEUS_HOST.resolve(prometheus_host), registry)
        except OSError as exc:
            _logger.warning("otel-llm: cannot serve /metrics on port %s: %s", port, exc)
    return processor


def _enforce(  # noqa: PLR0917 - the settings, resolved
    provider: TracerProvider,
    registry: CollectorRegistry | None,
    url: str | None,
    api_key: str | None,
    interval: float,
    fail_closed: bool,
) -> None:
    if url is None:
        _logger.warning(
            "otel-llm: policy_enforce=block needs policy_api_url (the collector's call-log "
            "API); not enforcing"
        )
        return
    try:
        enforcer = enforcement.enforce(
            url,
            api_key=api_key,
            interval=interval,
            fail_closed=fail_closed,
            service=_service(provider),
        )
    except ValueError as exc:
        _logger.warning("otel-llm: %s; not enforcing", exc)
        return
    _register(registry, enforcer)


def _local_policies(
    provider: TracerProvider, path: str, interval: float, url: str | None
) -> LocalPolicies | None:
    """Enforcement from this process's spend (``localpolicies``); None when the file is not
    valid (the application starts all the same, not enforcing, and says why)."""
    if settings.POLICY_API_URL.resolve(url) is not None:
        _logger.warning("otel-llm: policies is set: enforcing it in process, not policy_api_url")
    try:
        return enforce_locally(path, interval=interval, service=_service(provider))
    except PolicyFileError as exc:
        _logger.error("otel-llm: %s; not enforcing", exc)
        return None


def _service(provider: TracerProvider) -> str | None:
    service = provider.resource.attributes.get("service.name")
    return service if isinstance(service, str) else None


def _register(registry: CollectorRegistry | None, enforcer: enforcement.Enforcer) -> None:
    try:
        (registry if registry is not None else REGISTRY).register(EnforcementMetrics(enforcer))
    except ValueError:  # a second configure(): the first one's metrics are registered
        _logger.debug("otel-llm: enforcement metrics already registered", exc_info=True)


class EnforcementMetrics(Collector):
    """The enforcer's counters, read at scrape time (``semconv/metrics.yaml``)."""

    def __init__(self, enforcer: enforcement.Enforcer):
        self._enforcer = enforcer

    def collect(self) -> Iterator[Metric]:
        enforcer = enforcement.active or self._enforcer
        unreachable = CounterMetricFamily(
            "otel_llm_policy_enforcement_unreachable",
            "Polls of the policy states that failed (policy_fail_mode says what calls did).",
        )
        unreachable.add_metric([], enforcer.unreachable_polls)
        blocked = CounterMetricFamily(
            "otel_llm_policy_enforcement_blocks",
            "Calls this application refused before the provider was called.",
            labels=["policy", "rule"],
        )
        for (policy, rule), count in sorted(enforcer.blocked.copy().items()):
            blocked.add_metric([policy, rule], count)
        yield unreachable
        yield blocked


def _multi(provider: TracerProvider) -> SynchronousMultiSpanProcessor | None:
    multi = getattr(provider, "_active_span_processor", None)
    if type(multi) is SynchronousMultiSpanProcessor and isinstance(
        getattr(multi, "_span_processors", None), tuple
    ):
        return multi
    return None


def _wrap_exporting_processors(
    provider: TracerProvider, make: Callable[..., LLMSpanProcessor]
) -> LLMSpanProcessor:
    multi = _multi(provider)
    if multi is None:
        _logger.warning(
            "otel-llm: this TracerProvider's processors cannot be wrapped (unsupported SDK "
            "internals); recording metrics only -- exported spans will not carry cost attributes"
        )
        processor: LLMSpanProcessor = make()
        provider.add_span_processor(processor)
        return processor
    # The existing processors move behind ours: they still see every span (on_start included),
    # LLM calls with their cost. Swapped under the SDK's own lock, as add_span_processor does.
    with multi._lock:
        current = multi._span_processors
        # The app may have attached one itself: wrapping it again would price every call twice.
        for existing in current:
            if isinstance(existing, LLMSpanProcessor):
                return existing
        processor = make(*current)
        multi._span_processors = (processor,)
    return processor


def _new_provider() -> TracerProvider:
    """An SDK provider exporting over OTLP, set up from the standard environment variables."""
    provider = TracerProvider(resource=Resource.create())
    exporter = _exporter_from_environment()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter_from_environment() -> SpanExporter | None:
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if choice == "none":
        return None
    if choice == "console":
        return ConsoleSpanExporter()
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        # Imported on demand: each exporter pulls in its transport (grpcio or requests).
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        return OTLPSpanExporter()
    if protocol != "http/protobuf":
        _logger.warning("otel-llm: OTLP protocol %r not supported; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter()
