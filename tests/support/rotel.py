"""Rotel, an independent OTLP collector (Rust), as a subprocess on 127.0.0.1 (tests, benchmarks).

Why Rotel: an OTLP peer that shares no code with otel-llm or the Python SDK. What it forwards
unchanged proves the wire format both ends speak, and its throughput is the yardstick of the
collector benchmark. The ``rotel`` wheel bundles the ``rotel-agent`` binary; this module runs it
in the foreground (no ``--daemon``: the process we start is the agent, so we can stop it by pid).

    with Rotel(upstream=receiver.grpc_endpoint) as rotel:
        exporter = OTLPSpanExporter(endpoint=rotel.grpc_endpoint, insecure=True)
        ...

Flags used (``rotel-agent start --help``): ``--otlp-grpc-endpoint HOST:PORT``,
``--otlp-http-endpoint HOST:PORT``, ``--exporter otlp``, ``--otlp-exporter-endpoint URL``,
``--otlp-exporter-protocol grpc|http``, ``--otlp-exporter-compression gzip|none``,
``--pid-file``/``--log-file`` (per instance: the defaults are shared paths under /tmp),
``--traces-batch-max-size N`` (spans per exported request; default 8192),
``--debug-log traces --debug-log-verbosity detailed`` (prints every received span).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Literal, Self

from tests.support.ports import free_port
from tests.support.servers import HOST, Background

_ROTEL = find_spec("rotel")  # the wheel's Python API is not needed, only its binary
if _ROTEL is None or _ROTEL.origin is None:
    raise ImportError("rotel is not installed (it is in the test extra: pip install -e .[test])")
ROTEL_AGENT = Path(_ROTEL.origin).resolve().parent / "rotel-agent"
Protocol = Literal["grpc", "http"]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class RotelError(RuntimeError):
    """The agent did not start (its output is in the message)."""


class Rotel(Background):
    """One ``rotel-agent`` receiving OTLP on free 127.0.0.1 ports and exporting to ``upstream``.

    ``upstream`` is ``host:port`` of an OTLP receiver speaking ``protocol`` (gRPC, or HTTP with
    ``/v1/traces`` appended by the agent). ``batch_max_spans`` caps the agent's batches (its
    default merges up to 8192 spans into one request: about 4.4 MB of GenAI spans, over the
    otel-llm service's 4 MiB request limit -- in front of the service, use 1024 or less). It
    must be at least half the largest request the agent receives: rotel-agent splits an
    incoming request in at most two and DROPS one that would need more (it logs "Too many batch
    items split, dropping data"). SDK exporters send at most 512 spans: 1024 is safe.

    A context manager; ``stop()`` ends the agent and any process it started (its own process
    group) and is safe to call twice.
    """

    def __init__(
        self,
        upstream: str,
        *,
        protocol: Protocol = "grpc",
        compression: Literal["gzip", "none"] = "gzip",
        debug_traces: bool = False,
        batch_max_spans: int | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 15.0,
    ) -> None:
        self.upstream = upstream
        self.protocol = protocol
        self.compression = compression
        self.debug_traces = debug_traces
        self.batch_max_spans = batch_max_spans
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self.grpc_port = 0
        self.http_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    # --- endpoints ------------------------------------------------------------------------------
    @property
    def grpc_endpoint(self) -> str:
        """``host:port`` for an OTLP gRPC exporter (``insecure=True``)."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """The traces URL for an OTLP HTTP exporter."""
        return f"http://{HOST}:{self.http_port}/v1/traces"

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def log_path(self) -> Path:
        assert self._dir is not None, "not started"
        return Path(self._dir.name) / "stdout.log"

    def output(self) -> str:
        """What the agent printed so far (its log goes to stdout in the foreground)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def command(self) -> list[str]:
        """The full ``rotel-agent start`` command line for the current ports."""
        assert self._dir is not None
        directory = Path(self._dir.name)
        args = [
            str(ROTEL_AGENT),
            "start",
            "--otlp-grpc-endpoint",
            self.grpc_endpoint,
            "--otlp-http-endpoint",
            f"{HOST}:{self.http_port}",
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            f"http://{self.upstream}",
            "--otlp-exporter-protocol",
            self.protocol,
            "--otlp-exporter-compression",
            self.compression,
            "--pid-file",
            str(directory / "rotel.pid"),
            "--log-file",
            str(directory / "rotel.log"),
        ]
        if self.debug_traces:
            args += ["--debug-log", "traces", "--debug-log-verbosity", "detailed"]
        if self.batch_max_spans is not None:
            args += ["--traces-batch-max-size", str(self.batch_max_spans)]
        return [*args, *self.extra_args]

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix="rotel-")
        last = ""
        for _ in range(3):  # a port taken between free_port() and the agent's bind: new ports
            self.grpc_port, self.http_port = free_port(), free_port()
            if self.grpc_port == self.http_port:
                continue
            with self.log_path.open("wb") as log:
                # Own process group: stop() signals the agent and anything it spawned.
                self._process = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={**os.environ, "NO_COLOR": "1"},
                )
            if self._wait_ready():
                return self
            last = self.output()
            self._terminate()
        self._cleanup()
        raise RotelError(f"rotel-agent did not start:\n{last}")

    def _wait_ready(self) -> bool:
        """True once both receivers accept connections; False if the agent exited."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _listening(self.grpc_port) and _listening(self.http_port):
                return True
            time.sleep(0.05)
        return False

    def _terminate(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
        # Whatever is left of the group, the agent included if it ignored SIGTERM.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def _cleanup(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the agent flushes its batches), SIGKILL after ``timeout``."""
        self._terminate(timeout)
        self._cleanup()
