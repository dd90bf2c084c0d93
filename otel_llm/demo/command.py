"""``otel-llm demo`` once its arguments are parsed: simulate, summarize, print, maybe serve."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from typing import TextIO

from otel_llm._cli_types import CommandError
from otel_llm.demo.pipeline import Pipeline
from otel_llm.demo.report import format_text
from otel_llm.demo.scenario import plan
from otel_llm.demo.summary import summarize
from otel_llm.exposition import start_metrics_server


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
        summary = summarize(pipeline.spans(), pipeline.processor.pricer, seed=seed)
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
