"""Virtual time for code that waits with an injectable ``sleep(stop, seconds)`` (the collector's
forwarder): waiting costs (almost) no real time, yet every delay is recorded and adds up; a
store's settable clock; and a test's wait for what another thread does (``wait_until``).

    clock = VirtualClock(horizon=1.0)
    forwarder = Forwarder(queue, upstream, metrics, sleep=clock.sleep)
    clock.wait_parked(2)  # both workers have used up their first virtual second
    clock.release()       # time flows again
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime

# Each wait still takes this much real time at most: a thread retrying against a server that is
# down (or whose gRPC channel is still reconnecting) must not spin a core while the test waits.
_REAL_PAUSE = 0.005


class VirtualClock:
    """Each thread that sleeps has its own virtual time: the sum of the delays it waited.

    ``sleep`` records the delay and returns at once -- unless it takes the thread's time past
    ``horizon``: then the thread stays parked, as if the test had stopped time there, until
    ``release()`` or until ``stop`` is set (what a real ``Event.wait`` would have woken for).
    """

    def __init__(self, horizon: float = math.inf) -> None:
        self._changed = threading.Condition()
        self._horizon = horizon
        self._elapsed: dict[str, float] = {}
        self._parked = 0
        self.delays: list[float] = []
        """Every delay waited, in order, by every thread."""

    def sleep(self, stop: threading.Event, seconds: float) -> bool:
        """Waits ``seconds`` of virtual time unless ``stop`` is set; True if it was."""
        if stop.wait(min(seconds, _REAL_PAUSE)):
            return True
        name = threading.current_thread().name
        with self._changed:
            self.delays.append(seconds)
            elapsed = self._elapsed[name] = self._elapsed.get(name, 0.0) + seconds
            if elapsed > self._horizon:
                self._parked += 1
                self._changed.notify_all()
                # Polled: a thread cannot wait on the condition and on ``stop`` at once.
                while elapsed > self._horizon and not stop.is_set():
                    self._changed.wait(0.02)
                self._parked -= 1
        return stop.is_set()

    def now(self) -> float:
        """The virtual time: the furthest any thread has slept (with one worker, its time)."""
        with self._changed:
            return max(self._elapsed.values(), default=0.0)

    def wait_parked(self, threads: int, timeout: float = 10.0) -> None:
        """Returns once ``threads`` threads are parked at the horizon; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._parked < threads:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self._parked} of {threads} thread(s) reached the horizon"
                    )
                self._changed.wait(left)

    def release(self) -> None:
        """No horizon any more: parked threads go on, and later sleeps return at once."""
        with self._changed:
            self._horizon = math.inf
            self._changed.notify_all()


class SettableClock:
    """A store's clock (``open_store(clock=...)``) that the test moves: ``clock.now = ...``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Returns once ``condition()`` is true (polled); AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
