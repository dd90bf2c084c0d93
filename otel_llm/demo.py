"""``otel-llm demo``: simulated LLM calls, priced and measured, with no network and no API key.

The calls are real ``llm_call`` spans of a TracerProvider of the demo's own, with token counts
drawn from a seeded generator (the same seed gives the same calls and the same costs). They go
through ``LLMSpanProcessor`` into memory and into a fresh Prometheus registry; the summary is
read back from the exported spans, each re-priced with the processor's own price book so that
sums are exact Decimals rather than sums of floats.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TextIO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from prometheus_client import CollectorRegistry

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm._cli_types import CommandError
from otel_llm.call import read_call
from otel_llm.context import llm_context
from otel_llm.exposition import start_metrics_server
from otel_llm.manual import llm_call
from otel_llm.pricing import Cost, PriceBook
from otel_llm.processor import LLMSpanProcessor

SERVICE_NAME = "otel-llm-demo"
FEATURE_LABEL = "feature"
FEATURES = ("chat", "summarize", "classify", "extract")


# --- the simulated providers' errors (what their SDKs raise) ------------------------------------
class ProviderError(Exception):
    """A simulated API error; the span records its class as ``error.type``."""


class RateLimitError(ProviderError):
    """HTTP 429 from OpenAI or Gemini."""


class OverloadedError(ProviderError):
    """HTTP 529 from Anthropic."""


class ThrottlingException(ProviderError):
    """Bedrock's throttling error."""


# --- what is simulated --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Model:
    provider: str
    model: str
    response_model: str
    server_address: str
    input_tokens: tuple[int, int]
    output_tokens: tuple[int, int]
    cache: str
    """``prefix``: automatic prefix caching, reads only (OpenAI, Gemini); ``explicit``: cache
    writes and reads (Anthropic's cache_control); ``none``."""
    reasoning: bool
    error: type[ProviderError]
    id_prefix: str
    finish_reason: str


GPT_4O_MINI = Model(
    "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "api.openai.com",
    (300, 6_000), (40, 700), "prefix", False, RateLimitError, "chatcmpl-", "stop",
)  # fmt: skip
GPT_4O = Model(
    "openai", "gpt-4o", "gpt-4o-2024-08-06", "api.openai.com",
    (800, 12_000), (100, 1_500), "prefix", False, RateLimitError, "chatcmpl-", "stop",
)  # fmt: skip
CLAUDE_SONNET = Model(
    "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "api.anthropic.com",
    (2_000, 30_000), (150, 2_500), "explicit", False, OverloadedError, "msg_", "end_turn",
)  # fmt: skip
BEDROCK_HAIKU = Model(
    "aws.bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "us.anthropic.claude-3-5-haiku-20241022-v1:0", "bedrock-runtime.us-east-1.amazonaws.com",
    (400, 5_000), (60, 800), "explicit", False, ThrottlingException, "msg_bdrk_", "end_turn",
)  # fmt: skip
GEMINI_FLASH = Model(
    "gcp.gemini", "gemini-2.5-flash", "gemini-2.5-flash", "generativelanguage.googleapis.com",
    (300, 8_000), (100, 1_200), "prefix", True, RateLimitError, "", "STOP",
)  # fmt: skip
UNKNOWN_MODEL = Model(
    "openai", "gpt-imaginary-1", "gpt-imaginary-1", "api.openai.com",
    (500, 2_000), (50, 400), "none", False, RateLimitError, "chatcmpl-", "stop",
)  # fmt: skip
"""No price data knows it: its one call shows as unpriced (``unknown_model``), never as $0."""

# The traffic mix: the cheap model most, every priced model at least once in any 9 calls.
_DECK = (
    GPT_4O_MINI, GPT_4O_MINI, GPT_4O_MINI, GPT_4O,
    CLAUDE_SONNET, CLAUDE_SONNET, BEDROCK_HAIKU, GEMINI_FLASH, GEMINI_FLASH,
)  # fmt: skip
_FAILURE_SHARE = 0.1
_STREAM_SHARE = 0.4


@dataclass(frozen=True, slots=True)
class SimulatedCall:
    model: Model
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    reasoning_tokens: int
    stream: bool
    fails: bool
    feature: str
    user_id: str
    project_id: str
    response_id: str
    latency_s: float
    """Simulated wait before the first chunk / the response: milliseconds, to stay quick."""


def plan(calls: int, seed: int) -> list[SimulatedCall]:
    """The calls the demo makes: a function of ``calls`` and ``seed`` only.

    Always one call of the unknown model; with two calls or more, at least one failure and at
    least one ``summarize`` call.
    """
    rng = random.Random(seed)  # noqa: S311 - simulated traffic, not cryptography
    models = [_DECK[i % len(_DECK)] for i in range(calls)]
    rng.shuffle(models)
    # In place of one call of the most frequent model, so that every priced model stays.
    models[rng.choice([i for i, m in enumerate(models) if m is GPT_4O_MINI])] = UNKNOWN_MODEL
    planned = [_simulate(rng, model) for model in models]
    others = [i for i, call in enumerate(planned) if call.model is not UNKNOWN_MODEL]
    if others and not any(call.fails for call in planned):
        i = rng.choice(others)
        planned[i] = replace(planned[i], fails=True)
    if len(planned) > 1 and not any(call.feature == "summarize" for call in planned):
        i = rng.choice(others)
        planned[i] = replace(planned[i], feature="summarize")
    return planned


def _simulate(rng: random.Random, model: Model) -> SimulatedCall:
    input_tokens = rng.randint(*model.input_tokens)
    output_tokens = rng.randint(*model.output_tokens)
    cache_read = cache_creation = reasoning = 0
    if model.cache == "prefix" and input_tokens >= 1024 and rng.random() < 0.5:
        # OpenAI and Gemini cache prompt prefixes of 1024 tokens and more, in 128-token steps.
        cache_read = 1024 + 128 * rng.randrange((input_tokens - 1024) // 128 + 1)
    elif model.cache == "explicit":
        cached = rng.randint(input_tokens // 4, input_tokens * 3 // 4)
        kind = rng.random()
        if kind < 0.25:
            cache_creation = cached  # first call of a conversation writes the prompt cache
        elif kind < 0.75:
            cache_read = cached  # later calls read it
    if model.reasoning:
        reasoning = rng.randint(0, output_tokens * 2 // 3)
    return SimulatedCall(
        model=model,
        input_tokens=input_tokens,  # cached tokens included, as the conventions count
        output_tokens=output_tokens,  # reasoning included
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
        reasoning_tokens=reasoning,
        stream=rng.random() < _STREAM_SHARE,
        fails=model is not UNKNOWN_MODEL and rng.random() < _FAILURE_SHARE,
        feature=rng.choice(FEATURES),
        user_id=f"user-{rng.randint(1, 12):02d}",
        project_id=rng.choice(("proj-web", "proj-support")),
        response_id=f"{model.id_prefix}{rng.getrandbits(64):016x}",
        latency_s=rng.uniform(0.001, 0.004),
    )


# --- the pipeline -------------------------------------------------------------------------------
@dataclass
class Pipeline:
    """The demo's own TracerProvider -> LLMSpanProcessor -> in-memory exporter, and registry."""

    provider: TracerProvider
    exporter: InMemorySpanExporter
    registry: CollectorRegistry
    processor: LLMSpanProcessor
    max_tokens: int

    @classmethod
    def create(cls) -> Pipeline:
        registry = CollectorRegistry()
        exporter = InMemorySpanExporter()
        max_tokens = settings.MAX_TOKENS.resolve()
        processor = LLMSpanProcessor(
            SimpleSpanProcessor(exporter),
            registry=registry,
            extra_labels={FEATURE_LABEL: sc.OTEL_LLM_CONTEXT_FEATURE},
            max_tokens=max_tokens,
        )
        # Explicit sampler: an OTEL_TRACES_SAMPLER in the environment must not empty the demo.
        provider = TracerProvider(
            sampler=ALWAYS_ON,
            resource=Resource.create({"service.name": SERVICE_NAME}),
            shutdown_on_exit=False,
        )
        provider.add_span_processor(processor)
        return cls(provider, exporter, registry, processor, max_tokens)

    def run(self, calls: Sequence[SimulatedCall]) -> None:
        for call in calls:
            context = llm_context(
                feature=call.feature, user_id=call.user_id, project_id=call.project_id
            )
            # A failed call's error is the application's to handle; its span has error.type.
            with context, contextlib.suppress(ProviderError):
                self._call(call)
        self.provider.force_flush()

    def _call(self, call: SimulatedCall) -> None:
        model = call.model
        with llm_call(
            provider=model.provider,
            model=model.model,
            stream=call.stream,
            server_address=model.server_address,
            server_port=443,
            tracer_provider=self.provider,
        ) as handle:
            time.sleep(call.latency_s)
            if call.fails:
                raise model.error(f"{model.provider}: too many requests, retry later")
            if call.stream:
                handle.first_chunk()
                time.sleep(call.latency_s / 2)  # the rest of the stream
            handle.set_response(
                model=model.response_model,
                id=call.response_id,
                finish_reasons=[model.finish_reason],
            )
            handle.set_usage(
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cache_read_tokens=call.cache_read_tokens or None,
                cache_creation_tokens=call.cache_creation_tokens or None,
                reasoning_tokens=call.reasoning_tokens or None,
            )

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def shutdown(self) -> None:
        self.provider.shutdown()


# --- the summary --------------------------------------------------------------------------------
TOKEN_KINDS = ("input", "output", "cache_read", "cache_creation", "reasoning")


@dataclass
class Row:
    provider: str
    model: str
    calls: int = 0
    errors: int = 0
    unpriced: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    cost: Decimal = field(default_factory=Decimal)
    """Of the priced calls; unpriced calls add nothing (and are not $0: they are unknown)."""

    @property
    def cost_usd(self) -> str | None:
        """The exact cost, or None when no call could be priced."""
        return _exact(self.cost) if self.calls > self.unpriced else None

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "calls": self.calls,
            "errors": self.errors,
            "unpriced": self.unpriced,
            "tokens": dict(self.tokens),
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True, slots=True)
class UnpricedGroup:
    provider: str
    model: str
    reason: str
    error_type: str | None
    calls: int


@dataclass
class Summary:
    calls: int
    seed: int
    price_data: str
    rows: list[Row]
    total: Row
    features: dict[str, Row]
    """By ``llm_context`` feature (in ``Row.provider``)."""
    unpriced: list[UnpricedGroup]
    metrics_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        total = self.total.to_json()
        del total["provider"], total["model"]
        return {
            "calls": self.calls,
            "seed": self.seed,
            "price_data": self.price_data,
            "models": [row.to_json() for row in self.rows],
            "total": total,
            "features": [
                {
                    "feature": name,
                    "calls": row.calls,
                    "unpriced": row.unpriced,
                    "cost_usd": row.cost_usd,
                }
                for name, row in self.features.items()
            ],
            "unpriced": [
                {
                    "provider": group.provider,
                    "model": group.model,
                    "reason": group.reason,
                    "error_type": group.error_type,
                    "calls": group.calls,
                }
                for group in self.unpriced
            ],
            "metrics_url": self.metrics_url,
        }


def summarize(
    spans: Sequence[ReadableSpan], book: PriceBook, *, seed: int, max_tokens: int
) -> Summary:
    """Per provider and requested model: calls, errors, tokens and exact cost."""
    rows: dict[tuple[str, str], Row] = {}
    total = Row("", "")
    features: dict[str, Row] = {}
    unpriced: Counter[tuple[str, str, str, str | None]] = Counter()
    for span in spans:
        attributes = span.attributes or {}
        call, _ = read_call(attributes, max_tokens=max_tokens)
        if call is None:
            continue
        key = (call.provider or "", call.request_model or "")
        row = rows.setdefault(key, Row(*key))
        cost = Decimal(0)
        reason = attributes.get(sc.OTEL_LLM_COST_UNPRICED_REASON)
        if reason is None:
            # The span carries its cost as a float; the same price book gives it exactly.
            priced = book.price(call, span.start_time or 0)
            if isinstance(priced, Cost):
                cost = priced.amount
            else:
                reason = priced.reason
        if reason is not None:
            unpriced[(*key, str(reason), call.error_type)] += 1
        feature = str(attributes.get(sc.OTEL_LLM_CONTEXT_FEATURE, ""))
        feature_row = features.setdefault(feature, Row(feature, ""))
        for target in (row, total, feature_row):
            target.calls += 1
            target.errors += call.error_type is not None
            target.unpriced += reason is not None
            target.cost += cost
            for kind, count in zip(
                TOKEN_KINDS,
                (
                    call.input_tokens,
                    call.output_tokens,
                    call.cache_read_tokens,
                    call.cache_creation_tokens,
                    call.reasoning_tokens,
                ),
                strict=True,
            ):
                target.tokens[kind] += count or 0
    return Summary(
        calls=total.calls,
        seed=seed,
        price_data=book.data_version,
        rows=[rows[key] for key in sorted(rows)],
        total=total,
        features=dict(sorted(features.items(), key=lambda item: (-item[1].cost, item[0]))),
        unpriced=[
            UnpricedGroup(provider, model, reason, error_type, count)
            for (provider, model, reason, error_type), count in sorted(
                unpriced.items(), key=lambda item: (item[0][2] != "unknown_model", item[0][:3])
            )
        ],
    )


def format_text(summary: Summary) -> str:
    headers = (
        "provider", "model", "calls", "errors", "unpriced",
        "input", "output", "cache read", "cache write", "cost (USD)",
    )  # fmt: skip
    body = [_text_row(row.provider, row.model, row) for row in summary.rows]
    table = _table(headers, [*body, None, _text_row("total", "", summary.total)])
    lines = [
        f"otel-llm demo: {summary.calls} simulated LLM calls (seed {summary.seed}; "
        f"no network, no API key), priced with {summary.price_data}",
        "",
        *table,
    ]
    if summary.unpriced:
        lines += [
            "",
            "Unpriced calls (cost unknown: counted in "
            "gen_ai_client_unpriced_operations_total, not as $0):",
        ]
        groups = [
            (
                group.provider,
                group.model,
                group.reason,
                f"{group.calls} call{'s' if group.calls != 1 else ''}",
                f"failed: {group.error_type}" if group.error_type else "",
            )
            for group in summary.unpriced
        ]
        lines += ["  " + line for line in _table(None, groups)]
    if summary.features:
        lines += ["", f"Cost by feature (llm_context feature -> the '{FEATURE_LABEL}' label):"]
        features = [
            (
                name or "(none)",
                f"{row.calls} calls",
                _usd(row, "$"),
                f"({row.unpriced} unpriced)" if row.unpriced else "",
            )
            for name, row in summary.features.items()
        ]
        lines += ["  " + line for line in _table(None, features)]
    return "\n".join(lines) + "\n"


def _text_row(provider: str, model: str, row: Row) -> tuple[str, ...]:
    tokens = row.tokens
    return (
        provider,
        model,
        str(row.calls),
        str(row.errors),
        str(row.unpriced),
        f"{tokens['input']:,}",
        f"{tokens['output']:,}",
        f"{tokens['cache_read']:,}",
        f"{tokens['cache_creation']:,}",
        _usd(row),
    )


def _usd(row: Row, sign: str = "") -> str:
    """Rounded to a millionth of a dollar; ``unpriced`` when no call of the row has a price."""
    if row.cost_usd is None:
        return "unpriced"
    return f"{sign}{row.cost:.6f}"


def _table(headers: Sequence[str] | None, rows: Sequence[Sequence[str] | None]) -> list[str]:
    """Columns padded to their widest cell: the first two left-aligned, the rest right-aligned
    (when there are headers). ``None`` in ``rows`` is a rule."""
    cells = [list(headers)] if headers else []
    cells += [list(row) for row in rows if row is not None]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if headers is None or i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers)] if headers else []
    rule = "  ".join("-" * width for width in widths)
    for row in rows:
        out.append(rule if row is None else line(row))
    return out


def _exact(amount: Decimal) -> str:
    """An exact decimal string, never in exponent form."""
    return format(amount, "f")


# --- the command --------------------------------------------------------------------------------
def run(
    *,
    calls: int = 40,
    seed: int = 1,
    port: int | None = None,
    host: str = "127.0.0.1",
    serve_seconds: float | None = None,
    json_output: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``otel-llm demo``. With ``port``, serves ``/metrics`` for ``serve_seconds`` (None: until
    interrupted) after printing the summary. Returns the exit code."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    pipeline = Pipeline.create()
    server = None
    try:
        metrics_url = None
        if port is not None:
            try:
                server, _ = start_metrics_server(port, host, pipeline.registry)
            except OSError as exc:
                raise CommandError(
                    f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc}"
                ) from None
            bound = f"[{host}]" if ":" in host else host
            metrics_url = f"http://{bound}:{server.server_port}/metrics"
        pipeline.run(plan(calls, seed))
        summary = summarize(
            pipeline.spans(),
            pipeline.processor.price_book,
            seed=seed,
            max_tokens=pipeline.max_tokens,
        )
        summary.metrics_url = metrics_url
        if json_output:
            out.write(json.dumps(summary.to_json(), indent=2) + "\n")
        else:
            out.write(format_text(summary))
        out.flush()
        if metrics_url is not None:
            how_long = "until Ctrl-C" if serve_seconds is None else f"for {serve_seconds:g} s"
            notice = (
                f"Serving Prometheus metrics on {metrics_url} {how_long} "
                "(OpenMetrics with trace_id exemplars for 'Accept: application/openmetrics-text')"
            )
            if json_output:  # stdout stays pure JSON
                err.write(notice + "\n")
                err.flush()
            else:
                out.write("\n" + notice + "\n")
                out.flush()
            _serve(serve_seconds)
        return 0
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        pipeline.shutdown()


def _serve(seconds: float | None) -> None:
    # Ctrl-C is how a demo serving "until Ctrl-C" is meant to end: not an error.
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait(seconds)
