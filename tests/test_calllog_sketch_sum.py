"""``sketch.BytesSum``: serialised sketches added in bulk equal ``merge_bytes`` one by one."""

from __future__ import annotations

import random

from otel_llm.calllog.sketch import BytesSum, Sketch


def serialised(rng: random.Random, values: int) -> tuple[bytes, int]:
    """A sketch of ``values`` random latencies (some zero), and its count."""
    made = Sketch()
    for _ in range(values):
        made.add(0.0 if rng.random() < 0.05 else rng.lognormvariate(6, 2))
    return made.to_bytes(), values


def test_bulk_sums_equal_merging_each() -> None:
    rng = random.Random(5)  # noqa: S311 - test data
    rows = [serialised(rng, rng.choice([0, 1, 2, 30, 400])) for _ in range(600)]
    rows.append((b"", 0))
    one_by_one, bulk = Sketch(), Sketch()
    bulk.merge_bytes(rows[0][0])  # a sketch with counts of its own first
    one_by_one.merge_bytes(rows[0][0])
    summed = BytesSum(bulk)
    for data, count in rows:
        one_by_one.merge_bytes(data)
        summed.add(data, count)
    summed.add(None, 0)
    summed.done()
    assert (bulk.zero_count, bulk.low, bulk.high) == (
        one_by_one.zero_count,
        one_by_one.low,
        one_by_one.high,
    )
    assert bulk._used() == one_by_one._used()
    assert bulk.quantiles((0.5, 0.95, 0.99)) == one_by_one.quantiles((0.5, 0.95, 0.99))


def test_sums_are_added_in_before_a_count_could_carry() -> None:
    """Two sketches of 2**32 - 1 values in one bucket: their sum does not fit its 32 bits,
    and would carry into the next bucket's if they were summed in one integer."""
    full = Sketch()
    full.add_bucket(100)
    full.add_bucket(101)
    full.counts[100] = 2**32 - 1
    data = full.to_bytes()
    assert data[0] == 1  # uint32 counts
    bulk = Sketch()
    summed = BytesSum(bulk)
    summed.add(data, 2**32 - 1)  # its requests: no bucket has more
    summed.add(data, 2**32 - 1)
    summed.done()
    assert bulk._used() == [2 * (2**32 - 1), 2]


def test_wide_and_cut_short_sketches_are_merged_as_merge_bytes_does() -> None:
    wide = Sketch()
    wide.add_bucket(50)
    wide.add_bucket(52)
    wide.counts[50] = 2**33  # a count past uint32: serialised as uint64
    data = wide.to_bytes()
    assert data[0] == 2
    bulk, expected = Sketch(), Sketch()
    summed = BytesSum(bulk)
    summed.add(data, 2**33 + 1)
    expected.merge_bytes(data)
    short = Sketch()
    short.add_bucket(10)
    short.add_bucket(12)
    cut = short.to_bytes()[:-1]  # the last (8-bit) count missing
    assert cut[0] == 3
    summed.add(cut, 2)
    expected.merge_bytes(cut)
    summed.done()
    assert bulk._used() == expected._used()
    assert (bulk.low, bulk.high) == (expected.low, expected.high)


def test_counts_are_stored_as_narrow_as_the_largest_needs_and_summed_alike() -> None:
    """A daily row of a few calls takes a byte a count, a busy one 16, 32 or 64 bits; the bulk
    sum reads each width as ``merge_bytes`` does, mixed in one group and at one first bucket."""
    widths = {}
    for largest, version in ((1, 3), (255, 3), (256, 4), (65535, 4), (65536, 1), (2**32, 2)):
        made = Sketch()
        made.add_bucket(40)
        made.add_bucket(43)
        made.counts[41] = largest
        data = made.to_bytes()
        assert data[0] == version, largest
        assert Sketch.from_bytes(data)._used() == made._used()
        widths[largest] = data
    bulk, expected = Sketch(), Sketch()
    summed = BytesSum(bulk)
    for largest, data in widths.items():
        summed.add(data, largest + 2)
        expected.merge_bytes(data)
    for _ in range(300):  # 8-bit counts of 255 in 16-bit fields: added in before they carry
        summed.add(widths[255], 1000)
        expected.merge_bytes(widths[255])
    summed.done()
    assert bulk._used() == expected._used()
    assert (bulk.low, bulk.high, bulk.count) == (expected.low, expected.high, expected.count)
