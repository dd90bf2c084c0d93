"""``PolicyFile``: the policy file behind an engine, reloaded when it changes.

The file is polled (its size, modification time and inode: an editor that writes a new file
and renames it is seen too) every ``interval`` seconds, and read once a look finds it as the
look before did: a file written in place is truncated first, and a look between the two writes
would read it empty or cut short (and apply a valid prefix of its policies, or report an error
the finished file does not have). ``reload()`` reloads it at once (the collector CLI calls it on
SIGHUP: the edit is finished by then). A file that no longer validates is not applied: the
engine keeps the last good policies, the problem is logged with every line at fault, and
``state()`` (served by the API) says so until a good file is loaded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from otel_llm.background import Background
from otel_llm.policies.engine import PolicyEngine, SpendHistory
from otel_llm.policies.load import PolicyFileError, load_policies
from otel_llm.policies.windows import iso

_logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0
"""Seconds between looks at the file: an edit applies within two of them."""

_Signature = tuple[int, int, int] | None


class PolicyFile(Background):
    """Loads ``path`` into ``engine`` on change (``start`` polls in a thread) or on ``reload``.

    ``history`` gives where a new or changed budget's spend is read back (the call log's
    store), asked at each reload since the store may open after the engine is made.
    """

    def __init__(
        self,
        engine: PolicyEngine,
        path: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        history: Callable[[], SpendHistory | None] = lambda: None,
    ):
        self.engine = engine
        self.path = path
        self.interval = interval
        self._history = history
        self._signature = _signature_of(path)
        """The file as last read."""
        self._seen = self._signature
        """The file as the last look saw it."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0
        """Good files applied after the first."""
        self.failed_reloads = 0
        self.last_error: str | None = None
        """Why the file on disk is not the one in force (None: it is)."""
        self._last_error_ns: int | None = None

    @classmethod
    def open(
        cls, path: str, *, clock: Callable[[], int] = time.time_ns, **kwargs: Any
    ) -> PolicyFile:
        """The engine of the file at ``path`` and its watcher; ``PolicyFileError`` when the
        file is not valid (a service must not start on it)."""
        engine = PolicyEngine(load_policies(path), clock=clock)
        return cls(engine, path, **kwargs)

    def start(self) -> PolicyFile:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="otel-llm-policy-file", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.check()
            except Exception:
                _logger.exception("otel-llm policies: checking %s failed", self.path)

    def check(self) -> bool:
        """Reload if the file changed since it was last read and is the same as at the last
        look (no longer being written); True if it was reloaded."""
        seen, before = _signature_of(self.path), self._seen
        self._seen = seen
        if seen == self._signature or seen != before:
            return False
        return self.reload()

    def reload(self) -> bool:
        """Load the file now; True if it was applied. An invalid file is logged and not
        applied (the last good policies stay in force)."""
        with self._lock:
            self._signature = _signature_of(self.path)
            try:
                policies = load_policies(self.path)
            except PolicyFileError as exc:
                # Logged before it is counted: whoever sees the count (the API, a test waiting
                # on it in another thread) finds the log written too.
                _logger.error(
                    "otel-llm policies: %s; keeping the %d policies loaded before",
                    exc,
                    len(self.engine.policies.policies),
                )
                self.last_error = str(exc)
                self._last_error_ns = time.time_ns()
                self.failed_reloads += 1
                return False
            read_again = self.engine.replace(policies, self._history())
            _logger.info(
                "otel-llm policies: reloaded %s: %d policies%s",
                self.path,
                len(policies.policies),
                f"; spend read again for {', '.join(read_again)}" if read_again else "",
            )
            self.last_error = self._last_error_ns = None
            self.reloads += 1
            return True

    def state(self) -> dict[str, Any]:
        """The file's status for the API."""
        return {
            "path": self.path,
            "loaded_at": iso(self.engine.loaded_at_ns),
            "reloads": self.reloads,
            "failed_reloads": self.failed_reloads,
            "last_error": self.last_error,
            "last_error_at": iso(self._last_error_ns) if self._last_error_ns else None,
        }


def _signature_of(path: str) -> _Signature:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_size, status.st_mtime_ns, status.st_ino)
