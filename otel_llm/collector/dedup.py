"""``RecentSpans``: the ids of the last N spans the collector counted in its metrics.

OTLP delivery is at least once: a client whose export timed out, or whose reply was lost, sends
the same request again, and the service accepts it again (and forwards it: whether the upstream
got the first copy is not known here). The call log keeps one call per id; the Prometheus
counters would add the span's cost and tokens twice. So the enricher counts a priced span only
the first time its (trace id, span id) is seen among the last N counted.

Bounded and O(1) per span: a ring of the N most recent keys and a set of the same keys; each new
key overwrites (and forgets) the oldest once the ring is full. About 110 bytes per key (a 24-byte
``bytes``, its set slot and its ring slot), so the default 100,000 keys take about 11 MB.

A span redelivered after N newer priced spans has fallen out of the window and IS counted again:
the window is sized for the retries of clients (seconds to minutes), not to deduplicate for
ever. It lives in memory: a restarted service remembers nothing. Spans are told apart by their
ids alone, as OTLP identifies them: two different calls a broken client sent under the same ids
count once. A span without a valid id (missing, wrong length or all zeros, which OTLP calls
invalid) is always counted: it cannot be told apart from another. A flood of new ids only
pushes older ones out sooner (their redeliveries count again); memory stays bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

_TRACE_ID_BYTES = 16
_SPAN_ID_BYTES = 8
_ZERO_TRACE = bytes(_TRACE_ID_BYTES)
_ZERO_SPAN = bytes(_SPAN_ID_BYTES)


def span_key(trace_id: bytes, span_id: bytes) -> bytes | None:
    """The key of a span (its trace id then its span id), None when the ids are not valid."""
    if (
        len(trace_id) != _TRACE_ID_BYTES
        or len(span_id) != _SPAN_ID_BYTES
        or trace_id == _ZERO_TRACE
        or span_id == _ZERO_SPAN
    ):
        return None
    return trace_id + span_id


class RecentSpans:
    """The last ``size`` span keys seen; thread-safe. ``size`` 0 remembers nothing."""

    __slots__ = ("_keys", "_lock", "_oldest", "_ring", "size")

    def __init__(self, size: int):
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self._ring: list[bytes] = []  # grows to ``size``, then is overwritten in place
        self._keys: set[bytes] = set()
        self._oldest = 0  # the ring's slot overwritten next, once it is full
        self._lock = threading.Lock()

    def admit(self, keys: Sequence[bytes | None]) -> list[bool]:
        """For each key in turn: True when it is not among the last ``size`` keys (it is
        remembered now), False when it is (a duplicate). A None key (no valid id) is always
        new and not remembered. One lock for all of them: a request's spans come together, and
        taking a lock per span cost as much as the look-up."""
        size = self.size
        if not size:
            return [True] * len(keys)
        admitted = []
        with self._lock:
            known, ring, oldest = self._keys, self._ring, self._oldest
            for key in keys:
                if key is None:
                    admitted.append(True)
                    continue
                if key in known:
                    admitted.append(False)
                    continue
                admitted.append(True)
                known.add(key)
                if len(ring) < size:
                    ring.append(key)
                else:
                    known.discard(ring[oldest])
                    ring[oldest] = key
                    oldest = oldest + 1 if oldest + 1 < size else 0
            self._oldest = oldest
        return admitted

    def first_seen(self, key: bytes | None) -> bool:
        """``admit`` of one key."""
        return self.admit((key,))[0]

    def __len__(self) -> int:
        return len(self._keys)
