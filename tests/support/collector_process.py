"""``otel-llm collector`` run as users run it: the CLI in a subprocess, endpoints read from its
start-up log, stopped with SIGTERM (or killed) by the test."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request

READY = re.compile(r"gRPC on (\S+), HTTP on (\S+), metrics on (\S+);")
API = re.compile(r"query API on (http://\S+)")


class CollectorProcess:
    """The CLI in a subprocess; ``grpc``/``http``/``metrics``/``api`` read from its log."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        environment.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "otel_llm", "collector", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.log: list[str] = []
        self.grpc = self.http = self.metrics = ""
        self.api: str | None = None
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            if found := READY.search(line):
                self.grpc, self.http, self.metrics = found.groups()
            if "call log" in line:  # the call log's line comes right after the ready line
                found_api = API.search(line)
                self.api = found_api.group(1) if found_api else None
                break
        # Keep draining stderr so the service never blocks on a full pipe.
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _read_rest(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    @property
    def text(self) -> str:
        return "".join(self.log)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=20)
        self._drain.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._drain.join(5)
