"""``otel-llm demo --serve``: a collector with its call log and page, fed a month of traffic.

The collector runs in this process, built as ``otel-llm collector`` builds it -- a
``CollectorService`` with the call log (``COLLECTOR_COMPANION``'s ``CollectorCallLog``) as its
call and span sinks -- rather than as a subprocess: one process to start and to stop with one
Ctrl-C, the ports it bound read from the objects instead of parsed from a log, and nothing
left running if the demo dies. The traffic still reaches it the way an application's does:
spans over OTLP/HTTP to its receiver (``sender``), through its durable queue into the call log.

Everything lives in a temporary directory (the queue, and the SQLite call log unless a store
is given), removed on exit. Its addresses, store, queue and key come from its flags only, not
from ``OTEL_LLM_*`` variables meant for a real collector (which could, say, point the demo at
a production store); the pricing and API options (price overrides, rate limits) still apply.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from otel_llm._cli_types import CommandError
from otel_llm.calllog.auth import new_key
from otel_llm.calllog.config import COLLECTOR_COMPANION, CallLogConfig
from otel_llm.collector.config import CollectorConfig
from otel_llm.collector.feed import CALLS
from otel_llm.collector.service import CollectorService, StartError
from otel_llm.demo.sender import Sender
from otel_llm.demo.traffic import DAYS, SERVICES, month

_logger = logging.getLogger(__name__)

KEY_NAME = "demo"
_STORED_WAIT_S = 60.0
"""Seconds to wait for the call log to store what was sent before the page is announced."""


def serve(
    *,
    calls: int,
    seed: int,
    host: str,
    port: int,
    store: str | None,
    serve_seconds: float | None,
    out: TextIO | None = None,
) -> int:
    """Run until SIGINT/SIGTERM (or ``serve_seconds``); returns the exit code."""
    out = out if out is not None else sys.stdout
    stop = threading.Event()
    with _stopped_by_signals(stop), tempfile.TemporaryDirectory(prefix="otel-llm-demo-") as tmp:
        key = new_key()
        # The key ring reads OTEL_LLM_CALL_LOG_API_KEYS(_FILE) for what it is not given: an
        # empty key file of its own keeps a real collector's keys out of the demo.
        no_key_file = Path(tmp) / "no-keys.json"
        no_key_file.write_text('{"keys": []}\n', encoding="utf-8")
        call_log = COLLECTOR_COMPANION.open(
            CallLogConfig.from_settings(
                environ={},
                store=store if store is not None else str(Path(tmp) / "calls.db"),
                api_endpoint=_endpoint(host, port),
                api_keys_file=str(no_key_file),
                api_keys=f"{KEY_NAME}={key}",
            )
        )
        service = CollectorService(
            CollectorConfig.from_settings(
                environ={},
                grpc_endpoint=_endpoint(host, 0),
                http_endpoint=_endpoint(host, 0),
                metrics_endpoint=_endpoint(host, 0),
                queue_dir=str(Path(tmp) / "queue"),
            ),
            call_sink=call_log.sink,
            span_sink=call_log.span_sink,
        )
        try:
            call_log.start(service.registry)  # before the service: its sink must be ready
            try:
                service.start()
            except StartError as exc:
                raise CommandError(str(exc)) from exc
            api_port = call_log.service.api_port if call_log.service is not None else None
            if api_port is None:
                raise CommandError(f"the call log is not served: {call_log.describe()}")
            otlp = f"http://{_bracketed(host)}:{service.http_port}"
            out.write(f"otel-llm demo: feeding {DAYS} days of simulated traffic to {otlp} ...\n")
            out.flush()
            sent = _feed(service, f"{otlp}/v1/traces", calls, seed, stop)
            if not stop.is_set():
                base = f"http://{_bracketed(host)}:{api_port}"
                out.write(_banner(base, key, sent, service, host=host, store=store))
                out.flush()
                stop.wait(serve_seconds)
        finally:
            # The service first (no new calls; the feeder hands over what it accepted), then
            # the call log (its writer flushes before the API goes).
            try:
                service.stop()
            finally:
                call_log.stop()
    return 0


def _feed(
    service: CollectorService, endpoint: str, calls: int, seed: int, stop: threading.Event
) -> int:
    """Send the month, then wait until the call log has stored it; returns the calls sent."""
    sender = Sender(endpoint)
    try:
        sent = sender.send(month(calls, seed, time.time_ns()), stop)
    finally:
        exported = sender.close()
    queue = service.queue
    deadline = time.monotonic() + _STORED_WAIT_S
    while queue is not None and queue.waiting(CALLS) and time.monotonic() < deadline:
        if stop.wait(0.05):
            break
    if not stop.is_set() and (not exported or (queue is not None and queue.waiting(CALLS))):
        # Not fatal: the page shows what did arrive, and the rest may still come.
        _logger.warning("otel-llm demo: not every simulated call was stored in time")
    return sent


def _banner(
    base: str, key: str, sent: int, service: CollectorService, *, host: str, store: str | None
) -> str:
    where = _bracketed(host)
    kept = f"{store} (kept)" if store else "a temporary SQLite file (removed on exit)"
    services = ", ".join(s.name for s in SERVICES)
    return (
        f"\n{sent:,} simulated LLM calls of the last {DAYS} days are in the call log "
        f"({services}).\n\n"
        f"  Open:     {base}/\n"
        f"  API key:  {key}\n"
        "            (the page asks for it; the JSON API takes it as 'Authorization: Bearer "
        f"KEY', e.g. {base}/api/v1/calls/stats)\n\n"
        f"  OTLP in:  gRPC {where}:{service.grpc_port}, HTTP http://{where}:{service.http_port}"
        " -- point an application of yours here too\n"
        f"  Metrics:  http://{where}:{service.metrics_port}/metrics\n"
        f"  Call log: {kept}\n\n"
        "Serving until Ctrl-C.\n"
    )


def _endpoint(host: str, port: int) -> str:
    return f"{_bracketed(host)}:{port}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (the demo then stops cleanly, exit code 0) instead of
    raising KeyboardInterrupt or killing the process mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only: a caller elsewhere stops it otherwise
        return

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
