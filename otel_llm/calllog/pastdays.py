"""What stats keep between answers of the days before today, valid exactly while they last.

Ranking 100,000 users over 30 days reads ~1,000,000 daily rows of the table by user and sorts
them by user (400-800 ms on SQLite at 1,000,000 calls); a day's rows only change when a call of
that day is stored. So a stats answer grouped by a field its base table does not keep (user,
API key, status) keeps, per filter and range of complete days: the busiest groups of those days
and their request counts (10,000 or 10 times ``limit`` of them: everyone else had at most as many as
the last of them), the sums and sketches of the groups it listed, and every call's sketches.
The next answer reads today's rows only, and ranks on what was kept plus today's
(``pastranking.kept_groups``). When the day turns, the new range's entry is made from yesterday's
(``nearest``, ``pastranking._derived``): its days before the range taken away, yesterday added.

Kept only while exact: an entry holds the per-day sums of those days (from the base table,
under the same filter) it was made from; every stored call adds 1 to its day's ``requests``
in every daily table in one transaction, and daily rows are never taken from, so equal sums of
every day mean the same rows. The sums are read before what they vouch for: a call stored in
between makes the entry look older than it is, never newer (it is made again next time).
Bounded: ``MAX_ENTRIES`` entries (the least recently used go first), ``MAX_LISTED`` listed
groups' sums and sketches over all of them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import date

from otel_llm.calllog.rollup import Totals

MAX_ENTRIES = 16
"""Filters and ranges kept (each: up to ~10,000 request counts and its sketches, ~1 MB)."""

MAX_LISTED = 2000
"""Listed groups' sums and sketches kept over all entries (each up to ~25 KB)."""

_REFUSED = 64
"""Keys remembered as not worth keeping (the database ranks them)."""

Signature = tuple[tuple[str, tuple[int, ...]], ...]
"""Each day's sums (``Totals.sums``), by day."""


@dataclass(slots=True)
class Kept:
    """What one answer kept of the complete days of its range, for one filter and grouping."""

    signature: Signature
    """The days' sums it was made from (base table, same filter)."""
    busiest: dict[str, int]
    """The busiest groups but ``other`` and their requests over those days, busiest first."""
    complete: bool
    """``busiest`` has every group with calls on those days; if not, the others had at most
    as many requests as its last."""
    everything: Totals
    """The sketches of every call of those days (its sums unused)."""
    listed: dict[str, Totals] = field(default_factory=dict)
    """Groups listed by an answer: their sums and sketches over those days."""
    bound: int | None = None
    """The most requests a group not in ``busiest`` can have had on those days (an entry
    made from another's: ``pastranking._derived``); None: the last of ``busiest``'s."""

    @property
    def floor(self) -> int:
        """The most requests a group not in ``busiest`` can have had on those days."""
        if self.complete:
            return 0
        if self.bound is not None:
            return self.bound
        return next(reversed(self.busiest.values())) if self.busiest else 0


class PastDays:
    """The kept entries of one store, shared by its readers' threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_listed: int = MAX_LISTED):
        self.max_entries = max_entries
        self.max_listed = max_listed
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Kept] = OrderedDict()
        self._listed = 0
        self._refused: OrderedDict[Hashable, None] = OrderedDict()

    def get(self, key: Hashable, signature: Signature) -> Kept | None:
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
        with self._lock:
            if key in self._entries:
                self._drop(key)
            while len(self._entries) >= self.max_entries:
                self._drop(next(iter(self._entries)))
            self._entries[key] = entry
            self._listed += len(entry.listed)

    def keep_listed(self, entry: Kept, groups: dict[str, Totals]) -> None:
        """Keep ``groups`` as listed groups of ``entry``, within ``max_listed`` over all."""
        with self._lock:
            if self._listed + len(groups) > self.max_listed:
                return
            added = len(groups.keys() - entry.listed.keys())
            entry.listed.update(groups)
            if any(kept is entry for kept in self._entries.values()):
                self._listed += added

    def nearest(
        self, family: tuple[Hashable, ...], first: date, split: date
    ) -> tuple[date, date] | None:
        """The days ``(first, split)`` of the kept entry keyed ``(*family, first, split)`` that
        covers the most of [first, split) and the least outside it, or None; an entry of the
        same filter and grouping whose days start at or before ``first`` and end after it and
        at or before ``split`` (the range of yesterday's answer, or of one made before late
        calls)."""
        best: tuple[int, date, date] | None = None
        with self._lock:
            for key in self._entries:
                if not isinstance(key, tuple) or key[:-2] != family:
                    continue
                start, end = key[-2:]
                if not start <= first < end <= split or (start, end) == (first, split):
                    continue
                apart = (first - start).days + (split - end).days
                if best is None or apart < best[0]:
                    best = (apart, start, end)
        return None if best is None else best[1:]

    def refuse(self, key: Hashable) -> None:
        """Remember that ``key``'s ranking is not worth keeping (the database ranks it)."""
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._refused[key] = None
            if len(self._refused) > _REFUSED:
                self._refused.popitem(last=False)

    def refused(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._refused

    def _drop(self, key: Hashable) -> None:
        self._listed -= len(self._entries.pop(key).listed)
