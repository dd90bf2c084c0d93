"""Retry delays shared by the queue's consumers (the forwarder and the call feeder)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

Sleep = Callable[[threading.Event, float], bool]
"""``sleep(stop, seconds)``: wait ``seconds`` unless ``stop`` is set first; True if it was."""


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt + 1``: doubling from ``initial`` up to
    ``maximum``, drawn from the upper half of that step so workers retrying together spread
    out, and never below ``initial``."""
    high = min(maximum, initial * 2.0 ** min(attempt, 62))
    return rng.uniform(max(initial, high / 2), high)
