"""A mergeable quantile sketch with 1% relative error (DDSketch-like), stored as bytes.

Daily aggregates keep one per (day, dimensions) for latency and time to first chunk, so
p50/p95/p99 of any set of days and dimensions is the merge of their sketches -- exact merging,
no re-reading of call records (which expire).

A value ``x`` (milliseconds) goes to bucket ``ceil(log_gamma(x))`` with ``gamma = (1+a)/(1-a)``,
``a = 0.01``; the bucket's estimate ``2 gamma^k / (gamma+1)`` is within ``a`` (relative) of every
value in it. The quantile ``q`` of ``n`` values is the estimate of the value at rank
``floor(q * (n - 1))`` of the sorted values (the "lower" definition), so it is within 1% of
that exact value. Values at or below ``MIN_VALUE`` (0 ms) count as 0; values above
``MAX_VALUE`` (about 11.6 days) fall in the top bucket (their estimate is then too low).

Buckets are dense: counts from the lowest to the highest bucket used, as an array of
unsigned integers. Merging is then a C-speed slice addition (``map(add, ...)``), which keeps
statistics over thousands of daily rows well within a query's time budget (see
benchmarks/calllog_benchmark.py).
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate
from operator import add, sub

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LOG_GAMMA = math.log(GAMMA)
_LOG_GAMMA = LOG_GAMMA
MIN_VALUE = 1e-3
"""Milliseconds: a microsecond; anything at or below counts as 0."""
MAX_VALUE = 1e9
"""Milliseconds: about 11.6 days; anything above falls in the top bucket."""
KEY_MIN = math.ceil(math.log(MIN_VALUE) / _LOG_GAMMA)
KEY_MAX = math.ceil(math.log(MAX_VALUE) / _LOG_GAMMA)
SIZE = KEY_MAX - KEY_MIN + 1

_HEADER = struct.Struct("<BQHH")  # version, zero count, first index, number of counts
_ONE = struct.Struct("<I")
_V_UINT32 = 1
_V_UINT64 = 2
_UINT32_MAX = 2**32 - 1
_SWAP = sys.byteorder != "little"
_NONE: list[int] = []  # the counts of a sketch without values yet (never written to)


def bucket(value: float) -> int:
    """The index of the bucket of ``value``; -1: it counts as 0."""
    if not value > MIN_VALUE:  # NaN too: never stored by the record builder anyway
        return -1
    return min(math.ceil(math.log(value) / _LOG_GAMMA), KEY_MAX) - KEY_MIN


class Sketch:
    """Counts of values per logarithmic bucket (index ``key - KEY_MIN``)."""

    __slots__ = ("counts", "high", "low", "one", "zero_count")

    def __init__(self) -> None:
        # Allocated at the second bucket used: many sketches stay empty (time to first chunk
        # of calls that did not stream), and a write builds one per user and day -- most of
        # them of one call (the dense array is 1,383 counts).
        self.counts: list[int] = _NONE
        self.one = 0
        """Without ``counts``: the count of the one bucket used (``low``, = ``high``)."""
        self.zero_count = 0
        self.low = SIZE  # lowest index used; SIZE when none
        self.high = -1  # highest index used

    def _used(self) -> list[int]:
        """The counts from the lowest to the highest bucket used."""
        if self.counts is _NONE:
            return [self.one] if self.high >= 0 else []
        return self.counts[self.low : self.high + 1]

    def _dense(self) -> list[int]:
        counts = self.counts = [0] * SIZE
        if self.high >= 0:
            counts[self.low] = self.one
        return counts

    @property
    def count(self) -> int:
        return self.zero_count + sum(self._used())

    def add(self, value: float) -> None:
        self.add_bucket(bucket(value))

    def add_bucket(self, index: int) -> None:
        """Count a value by its ``bucket`` (a call's value goes to several sketches: its
        logarithm is taken once)."""
        if index < 0:
            self.zero_count += 1
            return
        counts = self.counts
        if counts is _NONE:
            if self.high < 0:
                self.low = self.high = index
                self.one = 1
                return
            if index == self.low:
                self.one += 1
                return
            counts = self._dense()
        counts[index] += 1
        if index < self.low:  # noqa: PLR1730 - the hot path: a compare, not a call
            self.low = index
        if index > self.high:  # noqa: PLR1730
            self.high = index

    def add_all(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def merge(self, other: Sketch) -> None:
        self.zero_count += other.zero_count
        if other.high >= 0:
            self._add_counts(other.low, other._used())

    def subtract(self, other: Sketch) -> None:
        """Take away ``other``'s values, which must be among this one's (a part of the same
        calls): the counts of the rest, exact. Its lowest and highest buckets stay where
        they were (perhaps empty now: the quantiles skip empty buckets)."""
        self.zero_count -= other.zero_count
        if other.high >= 0:
            counts = self.counts if self.counts is not _NONE else self._dense()
            low, high = other.low, other.high
            counts[low : high + 1] = map(sub, counts[low : high + 1], other._used())

    def _add_counts(self, low: int, counts: list[int] | array[int]) -> None:
        # Slice addition runs in C: the cost of a merge is a call, not a loop over buckets.
        high = low + len(counts) - 1
        if self.counts is _NONE:
            self._dense()
        self.counts[low : high + 1] = map(add, self.counts[low : high + 1], counts)
        self.low = min(self.low, low)
        self.high = max(self.high, high)

    def quantile(self, q: float) -> float | None:
        """The estimate of the value at rank floor(q * (count - 1)); None when empty."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Several quantiles at the cost of one pass."""
        qs = list(qs)
        total = self.count
        if total == 0:
            return [None] * len(qs)
        cumulative = list(accumulate(self._used(), initial=0))
        results: list[float | None] = []
        for q in qs:
            rank = int(q * (total - 1))
            if rank < self.zero_count:
                results.append(0.0)
                continue
            # The first bucket whose cumulative count (after zeros) exceeds the rank.
            position = bisect_right(cumulative, rank - self.zero_count) - 1
            key = self.low + position + KEY_MIN
            results.append(2 * GAMMA**key / (GAMMA + 1))
        return results

    def to_bytes(self) -> bytes:
        """Header (version, zero count, first index, length), then the counts from the
        lowest to the highest bucket used, little-endian uint32 (uint64 if one is larger)."""
        if self.high < 0:
            return _HEADER.pack(_V_UINT32, self.zero_count, 0, 0)
        if self.counts is _NONE and self.one <= _UINT32_MAX:  # one bucket: most of a write's
            return _HEADER.pack(_V_UINT32, self.zero_count, self.low, 1) + _ONE.pack(self.one)
        used = self._used()
        wide = max(used) > _UINT32_MAX
        packed = array("Q" if wide else "I", used)
        if _SWAP:
            packed.byteswap()
        header = _HEADER.pack(
            _V_UINT64 if wide else _V_UINT32, self.zero_count, self.low, len(used)
        )
        return header + packed.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | None) -> Sketch:
        sketch = cls()
        if not data:
            return sketch
        sketch.merge_bytes(data)
        return sketch

    def merge_bytes(self, data: bytes | bytearray | memoryview | None) -> None:
        """Merge a serialised sketch without building a Sketch of it."""
        if not data:
            return
        data = bytes(data)
        version, zero_count, low, length = _HEADER.unpack_from(data)
        if version not in (_V_UINT32, _V_UINT64):
            raise ValueError(f"unknown sketch version {version}")
        self.zero_count += zero_count
        if length:
            counts = array("I" if version == _V_UINT32 else "Q")
            counts.frombytes(data[_HEADER.size : _HEADER.size + length * counts.itemsize])
            if _SWAP:
                counts.byteswap()
            self._add_counts(low, counts)


EMPTY_BYTES = _HEADER.pack(_V_UINT32, 0, 0, 0)
"""A sketch without values, serialised (as ``Sketch().to_bytes()``)."""
_ONE_VALUE: dict[int, bytes] = {}


def one_value_bytes(index: int) -> bytes:
    """A sketch of one value of bucket ``index`` (``bucket``'s result), serialised as
    ``to_bytes`` would: a write's daily rows are mostly of one call (100,000 users), and
    building a Sketch per row to serialise it was a third of the write's Python time. At
    most SIZE + 1 entries are cached (one per bucket)."""
    data = _ONE_VALUE.get(index)
    if data is None:
        if index < 0:
            data = _HEADER.pack(_V_UINT32, 1, 0, 0)
        else:
            data = _HEADER.pack(_V_UINT32, 0, index, 1) + _ONE.pack(1)
        _ONE_VALUE[index] = data
    return data


def merged_bytes(old: bytes, new: bytes) -> bytes:
    """``Sketch.from_bytes(old)`` merged with ``new``, serialised: the same bytes, without the
    dense array of SIZE counts a Sketch allocates (SQLite's upsert merges each stored row's
    sketches with the batch's; that allocation was most of the merge's time)."""
    version_old, zeros_old, low_old, length_old = _HEADER.unpack_from(old)
    version_new, zeros_new, low_new, length_new = _HEADER.unpack_from(new)
    if (
        version_old not in (_V_UINT32, _V_UINT64)
        or version_new not in (_V_UINT32, _V_UINT64)
        or low_old + length_old > SIZE
        or low_new + length_new > SIZE
    ):
        return _merged_slowly(old, new)  # raises on a bad version, as merge_bytes does
    zeros = zeros_old + zeros_new
    if length_new and low_old <= low_new and low_new + length_new <= low_old + length_old:
        # The usual merge: a stored row's sketch and a batch's few values within its range.
        added = _added_within(
            old,
            new,
            length_old=length_old,
            version_new=version_new,
            length=length_new,
            at=low_new - low_old,
        )
        if added is not None:
            return _HEADER.pack(_V_UINT32, zeros, low_old, length_old) + added
    if not length_new:
        if not length_old:
            return _HEADER.pack(_V_UINT32, zeros, 0, 0)
        low, high = low_old, low_old + length_old - 1
    elif not length_old:
        low, high = low_new, low_new + length_new - 1
    else:
        low = min(low_old, low_new)
        high = max(low_old + length_old, low_new + length_new) - 1
    counts = [0] * (high - low + 1)
    for version, start, length, data in (
        (version_old, low_old, length_old, old),
        (version_new, low_new, length_new, new),
    ):
        if length:
            part = array("I" if version == _V_UINT32 else "Q")
            part.frombytes(data[_HEADER.size : _HEADER.size + length * part.itemsize])
            if len(part) != length:  # cut short: merge_bytes' reading of it
                return _merged_slowly(old, new)
            if _SWAP:
                part.byteswap()
            at = start - low
            counts[at : at + length] = map(add, counts[at : at + length], part)
    wide = max(counts) > _UINT32_MAX
    packed = array("Q" if wide else "I", counts)
    if _SWAP:
        packed.byteswap()
    return _HEADER.pack(_V_UINT64 if wide else _V_UINT32, zeros, low, len(counts)) + (
        packed.tobytes()
    )


def _added_within(
    old: bytes, new: bytes, *, length_old: int, version_new: int, length: int, at: int
) -> bytes | None:
    """``old``'s uint32 counts with ``new``'s added (within them), serialised; None when
    ``old``'s are not uint32 or a sum is not (then the general merge, which writes the same
    bytes as ``to_bytes``). Adds in C over the few counts ``new`` has, not over every count."""
    if old[0] != _V_UINT32:
        return None
    counts = array("I")
    counts.frombytes(old[_HEADER.size : _HEADER.size + 4 * length_old])
    part = array("I" if version_new == _V_UINT32 else "Q")
    part.frombytes(new[_HEADER.size : _HEADER.size + length * part.itemsize])
    if len(counts) != length_old or len(part) != length:
        return None
    if _SWAP:
        counts.byteswap()
        part.byteswap()
    try:
        counts[at : at + length] = array("I", map(add, counts[at : at + length], part))
    except OverflowError:
        return None
    if _SWAP:
        counts.byteswap()
    return counts.tobytes()


def _merged_slowly(old: bytes, new: bytes) -> bytes:
    merged = Sketch.from_bytes(old)
    merged.merge_bytes(new)
    return merged.to_bytes()


def merged(blobs: Iterable[bytes | None]) -> Sketch:
    """One sketch of many serialised ones."""
    result = Sketch()
    for blob in blobs:
        result.merge_bytes(blob)
    return result


def buckets_bytes(buckets: Iterable[int]) -> bytes:
    """A sketch of values of these buckets (``bucket``'s results), serialised as ``to_bytes``
    would, without a Sketch: a write's daily row of a few calls would allocate the dense array
    of SIZE counts at its second bucket (9 us of a row's 10, measured) to serialise a handful."""
    zeros = 0
    counts: dict[int, int] = {}
    for index in buckets:
        if index < 0:
            zeros += 1
        else:
            counts[index] = counts.get(index, 0) + 1
    if not counts:
        return _HEADER.pack(_V_UINT32, zeros, 0, 0)
    low = min(counts)
    used = [0] * (max(counts) - low + 1)
    for index, count in counts.items():
        used[index - low] = count
    packed = array("I", used)  # a write's counts: far below 2**32
    if _SWAP:
        packed.byteswap()
    return _HEADER.pack(_V_UINT32, zeros, low, len(used)) + packed.tobytes()


class BytesSum:
    """Serialised sketches added into a Sketch in bulk (stats merge thousands of daily rows'):
    each one's uint32 counts read as one integer (count i in bits 32i to 32i+31) and added to
    those of the sketches starting at the same bucket -- an addition in C a sketch, where
    ``merge_bytes`` makes an array and a list of its slice (2-4x the time, measured on 10,800
    daily rows); ``done`` adds the sums into the sketch. Exact: no field carries into the next,
    as ``most`` bounds each sketch's counts (its row's requests) and the sums are added into
    the sketch before their bound passes 2**32 - 1. Anything else (uint64 counts, a sketch cut
    short) goes through ``merge_bytes``."""

    __slots__ = ("_into", "_lengths", "_most", "_sums")

    def __init__(self, into: Sketch) -> None:
        self._into = into
        self._sums: dict[int, int] = {}
        self._lengths: dict[int, int] = {}
        self._most = 0

    def add(self, data: bytes | memoryview | None, most: int) -> None:
        if not data:
            return
        version, zero_count, low, length = _HEADER.unpack_from(data)
        end = _HEADER.size + 4 * length
        if version != _V_UINT32 or len(data) < end or low + length > SIZE or most > _UINT32_MAX:
            self._into.merge_bytes(data)
            return
        self._into.zero_count += zero_count
        if not length:
            return
        if self._most + most > _UINT32_MAX:
            self.done()
        self._most += most
        value = int.from_bytes(memoryview(data)[_HEADER.size : end], "little")
        sums = self._sums
        if low in sums:
            sums[low] += value
            self._lengths[low] = max(self._lengths[low], length)
        else:
            sums[low] = value
            self._lengths[low] = length

    def done(self) -> None:
        """Add what was summed into the sketch (and start again from nothing)."""
        for low, value in self._sums.items():
            length = self._lengths[low]
            counts = array("I")
            counts.frombytes(value.to_bytes(4 * length, "little"))
            if _SWAP:
                counts.byteswap()
            self._into._add_counts(low, counts)
        self._sums = {}
        self._lengths = {}
        self._most = 0
