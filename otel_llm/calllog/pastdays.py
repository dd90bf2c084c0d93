"""What stats keep between answers of the days before today, valid exactly while they last.

Ranking 100,000 users over 30 days reads ~1,000,000 daily rows of the table by user and sorts
them by user (400-800 ms on SQLite at 1,000,000 calls); a day's rows only change when a call of
that day is stored. So a stats answer grouped by a field its base table does not keep (user,
API key, status) keeps, per filter and range of complete days: every group's request count
(the ranking), the sums and sketches of the groups it listed, and the sketches of every call.
The next answer reads today's rows only, and what it kept of the days before.

Kept only while exact: an entry holds the per-day sums of those days (from the base table,
under the same filter) it was made from; every stored call adds 1 to its day's ``requests``
in every daily table in one transaction, and daily rows are never taken from, so equal sums of
every day mean the same rows. The sums are read before what they vouch for: a call stored in
between makes the entry look older than it is, never newer (it is made again next time).
Bounded: at most ``max_groups`` group counts over all entries (the oldest entries go first),
and an entry keeps the sums of at most ``MAX_LISTED`` listed groups.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

from otel_llm.calllog.rollup import Totals

MAX_GROUPS = 400_000
"""Group counts kept over all entries (about 100 bytes each: ~40 MB); a range with more
distinct values than this is ranked by the database every time."""

MAX_LISTED = 4000
"""Listed groups' sums and sketches an entry keeps (each up to ~25 KB with its sketches)."""


@dataclass(slots=True)
class Kept:
    """What one answer kept of the complete days of its range, for one filter and grouping."""

    signature: tuple[tuple[str, tuple[int, ...]], ...]
    """The days' sums it was made from (base table, same filter)."""
    requests: dict[str, int]
    """Every group's requests over those days."""
    order: list[str]
    """The groups but ``other``, busiest first (ties: the unnamed last, then by name)."""
    everything: Totals
    """The sketches of every call of those days (its sums unused)."""
    listed: dict[str, Totals] = field(default_factory=dict)
    """Groups listed by an answer: their sums and sketches over those days."""


class PastDays:
    """The kept entries of one store, shared by its readers' threads."""

    def __init__(self, max_groups: int = MAX_GROUPS):
        self.max_groups = max_groups
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Kept] = OrderedDict()
        self._groups = 0

    def get(self, key: Hashable, signature: tuple[tuple[str, tuple[int, ...]], ...]) -> Kept | None:
        """The entry made from these days' sums, or None (a stale one is dropped)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.signature != signature:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: Hashable, entry: Kept) -> None:
        size = len(entry.requests)
        if size > self.max_groups:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            while self._entries and self._groups + size > self.max_groups:
                self._drop(next(iter(self._entries)))
            self._entries[key] = entry
            self._groups += size

    def _drop(self, key: Hashable) -> None:
        self._groups -= len(self._entries.pop(key).requests)
