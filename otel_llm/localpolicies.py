"""In-process policies: an application without a collector enforces from its own spend.

``configure(policies="policies.yaml", policy_enforce="block")`` loads a policy file (the
collector's format and validation, ``policies.load``), keeps each budget's spend from the LLM
calls **this process** prices -- per process: the calls of other processes, and this one's
before it started, are not counted -- and refuses the calls a ``block`` policy refuses, as with
a collector: the same ``enforcement.Enforcer`` and ``EnforcementState``, built from the engine
here instead of from a poll of the collector's API.

``LocalPolicies`` is a span processor placed behind ``LLMSpanProcessor`` (one of its downstream
processors), so it sees each call as the processor hands it on: ``llm_context`` values merged,
a call counted in a nested span marked (and skipped here, as the call log skips it). It prices
the call with the processor's own ``Pricer`` into the ``Derived`` the collector's enricher makes
of the same span, and evaluates it with the collector's ``PolicyEngine`` (exact nano-USD). A
span ends before the instrumented call returns, so the call that exceeds a budget blocks the
next one. The enforcement state is rebuilt only when the engine's revision changes (a level, a
window's reset, a reload): the check before a call stays a dictionary look-up. A thread looks at
the file every ``interval`` seconds (``policy_refresh_interval``) and reloads it when it changed
(``policies.watch``: an invalid edit keeps the last good policies), and rolls windows that ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Self

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_llm import _semconv as sc
from otel_llm import enforcement
from otel_llm.background import Background
from otel_llm.call import is_llm_call, may_be_llm_call
from otel_llm.policies.calls import CallId, DerivedCall
from otel_llm.policies.watch import PolicyFile
from otel_llm.pricer import Pricer, scope_name, span_attributes

__all__ = ["LocalPolicies", "enforce_locally"]

_logger = logging.getLogger(__name__)
_COUNTED_IN = sc.OTEL_LLM_CALL_COUNTED_IN


class LocalPolicies(SpanProcessor, Background):
    """Evaluates the LLM calls of this process against a policy file, keeping ``enforcer``'s
    state; ``pricer`` is the ``LLMSpanProcessor``'s (set once it is made: calls are not
    evaluated before)."""

    def __init__(self, file: PolicyFile, enforcer: enforcement.Enforcer, interval: float):
        self.file = file
        self.engine = file.engine
        self.enforcer = enforcer
        self.interval = interval
        self.pricer: Pricer | None = None
        self._revision: int | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh(force=True)

    @classmethod
    def open(
        cls,
        path: str,
        enforcer: enforcement.Enforcer,
        interval: float,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> LocalPolicies:
        """The policies of the file at ``path``; ``PolicyFileError`` when it is not valid."""
        return cls(PolicyFile.open(path, clock=clock, interval=interval), enforcer, interval)

    # --- the span processor -------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        pricer = self.pricer
        if pricer is None:
            return
        try:
            attributes = span_attributes(span)
            if not may_be_llm_call(attributes) or _COUNTED_IN in attributes:
                return
            scope = scope_name(span)
            if not is_llm_call(attributes, scope):
                return
            derived = pricer.price_sdk_span(span, attributes, scope)
            if derived is None:
                return
            context = span.context
            ident = f"{context.trace_id:032x}-{context.span_id:016x}" if context else None
            self.engine.observe_spans([DerivedCall(derived, attributes, ident)], _call_id)
            if self.engine.revision != self._revision:
                self.refresh()
        except Exception:
            _logger.exception("otel-llm: evaluating a call against the policies failed")

    def shutdown(self) -> None:
        self.stop()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # --- the enforcement state ----------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> bool:
        """Rebuild the enforcer's state if the engine's revision changed (windows that ended
        rolled over first); True if it was rebuilt."""
        with self._lock:
            revision = self.engine.current_revision()
            if revision == self._revision and not force:
                return False
            # Read before the snapshot: a change in between is in the snapshot, and rebuilt
            # once more at the next look (never an older state over a newer one: the lock).
            self._revision = revision
            self.enforcer.state = enforcement.engine_state(self.engine)
            return True

    # --- the file -----------------------------------------------------------------------------
    def start(self) -> Self:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._run, name="otel-llm-local-policies", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.interval + 5)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.check()

    def check(self) -> None:
        """Reload the file if it changed, then bring the state up to date."""
        try:
            self.file.check()
            self.refresh()
        except Exception:
            _logger.exception("otel-llm: checking the policy file %s failed", self.file.path)


def enforce_locally(
    path: str,
    *,
    interval: float = 5.0,
    service: str | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> LocalPolicies:
    """Start enforcing the block policies of the file at ``path`` from this process's own spend
    (replacing any enforcement before); ``PolicyFileError`` when the file is not valid. The
    returned processor must be given the ``LLMSpanProcessor``'s ``pricer`` and see its spans
    (``configure`` places it among the processor's downstream processors)."""
    enforcer = enforcement.Enforcer(service, clock=clock)
    local = LocalPolicies.open(path, enforcer, interval, clock=clock).start()
    enforcement.install(enforcer, local)
    return local


def _call_id(call: DerivedCall) -> CallId:
    return call.call_id
