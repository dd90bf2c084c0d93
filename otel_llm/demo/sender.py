"""``demo --serve``'s month of traffic (``traffic.month``) as applications' spans, over OTLP/HTTP.

The spans are what an application instrumented with otel-llm exports: a TracerProvider per
service (each application has its own ``service.name``) through ``LLMSpanProcessor`` -- which
attaches ``llm_context``, passes an agent's identity down its trace and prices each call -- to
a ``BatchSpanProcessor`` and the SDK's OTLP/HTTP exporter, sending to the collector.

``llm_call`` takes its times from the clock, so a call of three weeks ago is written with the
``CallSpan`` it drives (the same attributes, failure and response) on a span started and ended
at the simulated times. The exception event of a failed call is stamped with the real time:
the call log reads the span's status, not its events.
"""

from __future__ import annotations

import threading

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from otel_llm import _semconv as sc
from otel_llm._version import __version__
from otel_llm.context import llm_context
from otel_llm.demo.pipeline import report, tracer_provider
from otel_llm.demo.traffic import (
    AGENT,
    AGENT_ID,
    ROUTE,
    SERVICES,
    TOOL,
    Month,
    TimedCall,
    Trace,
    messages,
)
from otel_llm.lifecycle import CallSpan, start_attributes
from otel_llm.processor import LLMSpanProcessor

_MS = 10**6
_QUEUE = 1 << 16
"""Spans the batch processor holds: more than a month of the largest demo, so none is dropped
while the exporter catches up."""


class Sender:
    """Writes traces to ``endpoint`` (``http://host:port/v1/traces``); ``close`` flushes."""

    def __init__(self, endpoint: str):
        exporter = OTLPSpanExporter(
            endpoint=endpoint, timeout=10, compression=Compression.NoCompression
        )
        self._batch = BatchSpanProcessor(
            exporter, max_queue_size=_QUEUE, schedule_delay_millis=100, max_export_batch_size=512
        )
        # One processor for every service: it keeps no per-provider state, and the metrics it
        # records go to a registry nobody reads (the collector's page is the point here).
        self.processor = LLMSpanProcessor(self._batch, registry=CollectorRegistry())
        self._tracers = {
            service.name: tracer_provider(self.processor, service.name).get_tracer(
                "otel_llm", __version__
            )
            for service in SERVICES
        }

    def send(self, month: Month, stop: threading.Event) -> int:
        """The month's traces in time order until ``stop`` is set; returns the calls sent."""
        sent = 0
        for one in month.traces:
            if stop.is_set():
                break
            self._trace(one)
            sent += len(one.calls)
        return sent

    def close(self, timeout_s: float = 30.0) -> bool:
        """Export what is left and stop; True when everything was exported in time."""
        flushed = self._batch.force_flush(int(timeout_s * 1000))
        self.processor.shutdown()
        return flushed

    def _trace(self, one: Trace) -> None:
        tracer = self._tracers[one.service.name]
        if not one.agent_run:
            self._call(tracer, one.calls[0], None)
            return
        first = one.calls[0]
        root = tracer.start_span(
            f"POST {ROUTE}",
            kind=SpanKind.SERVER,
            attributes={sc.HTTP_REQUEST_METHOD: "POST", "http.route": ROUTE},
            start_time=one.start_ns,
        )
        agent_attributes = {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT,
            sc.GEN_AI_AGENT_NAME: AGENT,
            sc.GEN_AI_AGENT_ID: AGENT_ID,
        }
        if first.conversation is not None:
            agent_attributes[sc.GEN_AI_CONVERSATION_ID] = first.conversation
        agent = tracer.start_span(
            f"{sc.OPERATION_INVOKE_AGENT} {AGENT}",
            context=trace.set_span_in_context(root),
            kind=SpanKind.INTERNAL,
            attributes=agent_attributes,
            start_time=one.start_ns + 10 * _MS,
        )
        under_agent = trace.set_span_in_context(agent)
        for step, call in enumerate(one.calls):
            self._call(tracer, call, under_agent)
            if step == 0:
                tool = tracer.start_span(
                    f"{sc.OPERATION_EXECUTE_TOOL} {TOOL}",
                    context=under_agent,
                    kind=SpanKind.INTERNAL,
                    attributes={
                        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL,
                        "gen_ai.tool.name": TOOL,
                        "gen_ai.tool.type": "function",
                    },
                    start_time=one.tool_ns[0],
                )
                tool.end(end_time=one.tool_ns[1])
        agent.end(end_time=one.calls[-1].end_ns + 10 * _MS)
        root.end(end_time=one.end_ns)

    @staticmethod
    def _call(tracer: trace.Tracer, timed: TimedCall, parent: Context | None) -> None:
        call = timed.call
        model, provider = call.model, call.model.provider
        context = llm_context(
            feature=call.feature,
            user_id=call.user_id,
            project_id=call.project_id,
            api_key_id=timed.api_key,
            conversation=timed.conversation,
        )
        with context:
            span = tracer.start_span(
                f"chat {model.model}",
                context=parent,
                kind=SpanKind.CLIENT,
                attributes=start_attributes(
                    operation="chat",
                    provider=provider.name,
                    model=model.model,
                    stream=call.stream,
                    server_address=provider.server_address,
                    server_port=443,
                ),
                start_time=timed.start_ns,
            )
            handle = CallSpan(span, timed.start_ns, streaming=call.stream)
            if timed.prompt is not None:
                handle.set(sc.GEN_AI_INPUT_MESSAGES, messages("user", timed.prompt))
            if call.fails:
                handle.fail(provider.error(provider.error_message))
            else:
                if timed.first_chunk_ns is not None:
                    handle.set(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, timed.first_chunk_ns / 1e9)
                if timed.answer is not None:
                    handle.set(sc.GEN_AI_OUTPUT_MESSAGES, messages("assistant", timed.answer))
                report(handle, call)
            span.end(end_time=timed.end_ns)
