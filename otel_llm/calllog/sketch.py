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
benchmarks/calllog_benchmark.py). The integers are as narrow as the largest count needs (8, 16,
32 or 64 bits; the header's version says which): a daily row of a user or an API key holds a
few calls spread over tens of buckets, mostly zeros, and at four bytes a count the sketches were
most of the API key table's bytes and of the rewriting of its rows on each write.
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
_V_UINT32 = 1
_V_UINT64 = 2
_V_UINT8 = 3
_V_UINT16 = 4
_CODE = {_V_UINT8: "B", _V_UINT16: "H", _V_UINT32: "I", _V_UINT64: "Q"}
"""A version's counts, as an ``array`` type code (little-endian on disk)."""
_UINT32_MAX = 2**32 - 1
_SWAP = sys.byteorder != "little"
_NONE: list[int] = []  # the counts of a sketch without values yet (never written to)


def _narrowest(largest: int) -> int:
    """The version whose counts are the narrowest that hold ``largest``."""
    if largest <= 0xFF:
        return _V_UINT8
    if largest <= 0xFFFF:
        return _V_UINT16
    return _V_UINT32 if largest <= _UINT32_MAX else _V_UINT64


def _packed(zero_count: int, low: int, counts: list[int], largest: int | None = None) -> bytes:
    """A sketch with counts, serialised as ``Sketch.to_bytes`` does (the narrowest version);
    ``largest``: their largest, when the caller knows it without a pass over them all.

    8- and 16-bit counts are not made by an ``array`` of their type: its items go through
    argument parsing one by one (+7,500 instructions a call of a write at 100,000 users,
    ``benchmarks/calllog_instructions.py``); ``bytes`` and a 32-bit array take them in C."""
    version = _narrowest(max(counts) if largest is None else largest)
    header = _HEADER.pack(version, zero_count, low, len(counts))
    if version == _V_UINT8:
        return header + bytes(counts)
    packed = array("Q" if version == _V_UINT64 else "I", counts)
    if _SWAP:
        packed.byteswap()
    data = packed.tobytes()
    if version == _V_UINT16:  # the two low bytes of each little-endian 32-bit count
        narrow = bytearray(2 * len(counts))
        narrow[0::2] = data[0::4]
        narrow[1::2] = data[1::4]
        return header + narrow
    return header + data


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
        lowest to the highest bucket used, little-endian unsigned integers of the narrowest
        width that holds the largest (``_CODE``); version 1 (uint32) when there are none."""
        if self.high < 0:
            return _HEADER.pack(_V_UINT32, self.zero_count, 0, 0)
        if self.counts is _NONE and self.one <= 0xFF:  # one bucket: most of a write's
            return _HEADER.pack(_V_UINT8, self.zero_count, self.low, 1) + bytes((self.one,))
        return _packed(self.zero_count, self.low, self._used())

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
        code = _CODE.get(version)
        if code is None:
            raise ValueError(f"unknown sketch version {version}")
        self.zero_count += zero_count
        if length:
            counts = array(code)
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
            data = _HEADER.pack(_V_UINT8, 0, index, 1) + b"\x01"
        _ONE_VALUE[index] = data
    return data


def merged_bytes(old: bytes, new: bytes) -> bytes:
    """``Sketch.from_bytes(old)`` merged with ``new``, serialised: the same bytes, without the
    dense array of SIZE counts a Sketch allocates (SQLite's upsert merges each stored row's
    sketches with the batch's; that allocation was most of the merge's time)."""
    version_old, zeros_old, low_old, length_old = _HEADER.unpack_from(old)
    version_new, zeros_new, low_new, length_new = _HEADER.unpack_from(new)
    if (
        version_old not in _CODE
        or version_new not in _CODE
        or low_old + length_old > SIZE
        or low_new + length_new > SIZE
    ):
        return _merged_slowly(old, new)  # raises on a bad version, as merge_bytes does
    zeros = zeros_old + zeros_new
    if (
        length_new
        and version_old != _V_UINT64
        and low_old <= low_new
        and low_new + length_new <= low_old + length_old
    ):
        # The usual merge: a stored row's sketch and a batch's few values within its range.
        added = _added_within(
            old,
            new,
            version_old=version_old,
            length_old=length_old,
            version_new=version_new,
            length=length_new,
            at=low_new - low_old,
        )
        if added is not None:
            return _HEADER.pack(version_old, zeros, low_old, length_old) + added
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
            part = array(_CODE[version])
            part.frombytes(data[_HEADER.size : _HEADER.size + length * part.itemsize])
            if len(part) != length:  # cut short: merge_bytes' reading of it
                return _merged_slowly(old, new)
            if _SWAP:
                part.byteswap()
            at = start - low
            counts[at : at + length] = map(add, counts[at : at + length], part)
    return _packed(zeros, low, counts)


def _added_within(
    old: bytes,
    new: bytes,
    *,
    version_old: int,
    length_old: int,
    version_new: int,
    length: int,
    at: int,
) -> bytes | None:
    """``old``'s counts with ``new``'s added (within them), serialised at ``old``'s width;
    None when a sum does not fit that width or the sums would fit a narrower one (a sketch
    stored before counts were narrowed) -- then the general merge, which writes the same bytes
    as ``to_bytes``. Adds in C over the few counts ``new`` has, not over every count. ``old``'s
    counts are not 64-bit (the general merge takes those)."""
    code = _CODE[version_old]  # not "Q": the caller's test
    part = array(_CODE[version_new])
    part.frombytes(new[_HEADER.size : _HEADER.size + length * part.itemsize])
    if len(part) != length:
        return None
    if _SWAP:
        part.byteswap()
    if code == "B":
        return _added_to_bytes(old, part, length_old=length_old, at=at)
    counts = array(code)
    counts.frombytes(old[_HEADER.size : _HEADER.size + counts.itemsize * length_old])
    if len(counts) != length_old:
        return None
    if _SWAP:
        counts.byteswap()
    try:
        counts[at : at + length] = array(code, map(add, counts[at : at + length], part))
    except OverflowError:
        return None
    # The sums only grow: a width that was the narrowest for the old counts still is, unless
    # they were stored wider than they needed.
    if code == "I" and max(counts) <= 0xFFFF:
        return None
    if _SWAP:
        counts.byteswap()
    return counts.tobytes()


def _added_to_bytes(old: bytes, part: array[int], *, length_old: int, at: int) -> bytes | None:
    """``_added_within`` for 8-bit stored counts, in a bytearray: it takes the sums in C, where
    an array of type 'B' parses each as a function argument."""
    stored = bytearray(old[_HEADER.size : _HEADER.size + length_old])
    if len(stored) != length_old:
        return None
    try:
        stored[at : at + len(part)] = map(add, stored[at : at + len(part)], part)
    except ValueError:  # a sum past 255
        return None
    return bytes(stored)


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
    return _packed(zeros, low, used, max(counts.values()))  # the few used, not the range


class _Fields:
    """``BytesSum``'s sums in fields of one width: by first bucket, each sum as one integer."""

    __slots__ = ("code", "largest", "lengths", "most", "sums", "width")

    def __init__(self, code: str) -> None:
        self.code = code
        self.width = array(code).itemsize
        self.largest = 2 ** (8 * self.width) - 1
        self.sums: dict[int, int] = {}
        self.lengths: dict[int, int] = {}
        self.most = 0
        """A bound of every count of the sums: up to ``largest``, nothing carries."""


class BytesSum:
    """Serialised sketches added into a Sketch in bulk (stats merge thousands of daily rows'):
    each one's counts read as one integer (count i in bits 16i to 16i+15 for 8- and 16-bit
    counts, 32i to 32i+31 for 32-bit ones) and added to those of the sketches of the same width
    starting at the same bucket -- an addition in C a sketch, where ``merge_bytes`` makes an
    array and a list of its slice (2-4x the time, measured on 10,800 daily rows); ``done`` adds
    the sums into the sketch. Exact: no count carries into the next, as ``most`` bounds each
    sketch's counts (its row's requests, or the largest count of its width) and the sums of a
    width are added into the sketch before their bound passes the largest a field holds. 8-bit
    counts are spread to 16 bits (a byte-slice assignment): summed in 8-bit fields, a row of the
    base table (~100 requests) could be added to one other before the sums went into the
    sketch, 3.8x the time of its 32-bit counts (measured on 11,000 rows). Anything else (uint64
    counts, a sketch cut short) goes through ``merge_bytes``."""

    __slots__ = ("_by_version", "_fields", "_into")

    def __init__(self, into: Sketch) -> None:
        self._into = into
        narrow, wide = self._fields = (_Fields("H"), _Fields("I"))
        self._by_version = {  # a version's bytes a count, the largest count, its fields
            _V_UINT8: (1, 0xFF, narrow),
            _V_UINT16: (2, 0xFFFF, narrow),
            _V_UINT32: (4, _UINT32_MAX, wide),
        }

    def add(self, data: bytes | memoryview | None, most: int) -> None:
        if not data:
            return
        version, zero_count, low, length = _HEADER.unpack_from(data)
        summed = self._by_version.get(version)
        if summed is None:
            self._into.merge_bytes(data)
            return
        width, largest, fields = summed
        end = _HEADER.size + width * length
        if len(data) < end or low + length > SIZE:
            self._into.merge_bytes(data)
            return
        self._into.zero_count += zero_count
        if not length:
            return
        most = min(most, largest)
        if fields.most + most > fields.largest:
            self._add_in(fields)
        fields.most += most
        if width == fields.width:
            value = int.from_bytes(memoryview(data)[_HEADER.size : end], "little")
        else:  # 8-bit counts, each to the low byte of a 16-bit field (little-endian)
            spread = bytearray(2 * length)
            spread[0::2] = memoryview(data)[_HEADER.size : end]
            value = int.from_bytes(spread, "little")
        sums = fields.sums
        if low in sums:
            sums[low] += value
            fields.lengths[low] = max(fields.lengths[low], length)
        else:
            sums[low] = value
            fields.lengths[low] = length

    def done(self) -> None:
        """Add what was summed into the sketch (and start again from nothing)."""
        for fields in self._fields:
            self._add_in(fields)

    def _add_in(self, fields: _Fields) -> None:
        for low, value in fields.sums.items():
            counts = array(fields.code)
            counts.frombytes(value.to_bytes(fields.width * fields.lengths[low], "little"))
            if _SWAP:
                counts.byteswap()
            self._into._add_counts(low, counts)
        fields.sums = {}
        fields.lengths = {}
        fields.most = 0
