"""Metric values kept in plain Python objects, rendered as prometheus_client families when
scraped.

A prometheus_client update goes through ``labels(...)`` (1.3 µs) and a lock per value (0.35 µs
per ``inc``): seven of them per LLM call cost ~6.7 µs. Here a call's updates are a few float
additions on cells the recorder already holds, under one lock, and the work of building
samples moves to the scrape. ``FamiliesCollector.collect`` yields exactly the families,
samples, order and exemplars prometheus_client's own ``Counter`` and ``Histogram`` would, so
the exposition is unchanged byte for byte (tests/test_exposition_golden.py).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client import metrics as _client_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

# An exemplar as kept: (trace id, observed value, wall-clock time). The trace id is formatted
# only when scraped, not on every call.
StoredExemplar = tuple[int, Any, float]


def _use_created() -> bool:
    # prometheus_client's switch for the _created samples (PROMETHEUS_DISABLE_CREATED_SERIES,
    # disable_created_metrics()): read at every scrape, as its own metrics do.
    return bool(getattr(_client_metrics, "_use_created", True))


def _exemplar(stored: StoredExemplar | None) -> Exemplar | None:
    if stored is None:
        return None
    trace_id, value, timestamp = stored
    return Exemplar({"trace_id": format(trace_id, "032x")}, value, timestamp)


class CounterCell:
    """One counter series: its value, creation time and latest exemplar."""

    __slots__ = ("created", "exemplar", "exemplar_at", "of", "value")

    def __init__(self, of: HistogramCell | None = None) -> None:
        self.value = 0.0
        self.of = of
        """A histogram whose sum this counter is (the tokens of a type count what the token
        usage histogram of the same labels sums, the same values added in the same order): read
        from there when scraped, ``value`` is then not added to (a float addition less a call,
        for input and output)."""
        self.created = time.time()
        self.exemplar: StoredExemplar | None = None
        self.exemplar_at = -math.inf
        """``time.monotonic()`` when ``exemplar`` was stored (the recorder's throttle)."""


class HistogramCell:
    """One histogram series: per-bucket counts (not cumulative), sum, and per-bucket exemplars.

    The bucket of a value is ``bisect_left(bounds, value)`` over the bounds with ``+Inf``: the
    first bound the value does not exceed, as prometheus_client picks it.
    """

    __slots__ = ("counts", "created", "exemplar_at", "exemplars", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0.0] * buckets
        self.sum = 0.0
        self.created = time.time()
        self.exemplars: list[StoredExemplar | None] = [None] * buckets
        self.exemplar_at = [-math.inf] * buckets


class Family:
    """A metric family: its name (counters without ``_total``), help, label names, and its
    series in the order they were made (the order prometheus_client exposes them in)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float] | None = None,
    ):
        # Made and dropped only to check the name, label names and buckets as prometheus_client
        # checks them (ValueError), so a bad extra label fails here, not at the first scrape.
        if buckets is None:
            Counter(name, documentation, labelnames, registry=None)
        else:
            Histogram(name, documentation, labelnames, registry=None, buckets=buckets)
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.type = "counter" if buckets is None else "histogram"
        self.bounds: tuple[float, ...] = ()
        self._le: tuple[str, ...] = ()
        if buckets is not None:
            bounds = [float(b) for b in buckets]
            if bounds[-1] != math.inf:
                bounds.append(math.inf)
            self.bounds = tuple(bounds)
            self._le = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        self.cells: dict[tuple[str, ...], Any] = {}

    def counter(self, labelvalues: tuple[str, ...], of: HistogramCell | None = None) -> CounterCell:
        """The counter series of these label values, made on first use (under the lock); ``of``:
        the histogram whose sum it is (``CounterCell.of``)."""
        cell = self.cells.get(labelvalues)
        if cell is None:
            cell = self.cells[labelvalues] = CounterCell(of)
        return cell

    def histogram(self, labelvalues: tuple[str, ...]) -> HistogramCell:
        """The histogram series of these label values, made on first use (under the lock)."""
        cell = self.cells.get(labelvalues)
        if cell is None:
            cell = self.cells[labelvalues] = HistogramCell(len(self.bounds))
        return cell

    def describe(self) -> Metric:
        return Metric(self.name, self.documentation, self.type)

    def snapshot(self) -> list[tuple[tuple[str, ...], tuple[Any, ...]]]:
        """Every series' values, copied (taken under the lock, rendered after it)."""
        if self.type == "counter":
            return [
                (
                    labels,
                    (
                        cell.value if cell.of is None else cell.of.sum,
                        cell.created,
                        cell.exemplar,
                    ),
                )
                for labels, cell in self.cells.items()
            ]
        return [
            (labels, (list(cell.counts), cell.sum, cell.created, list(cell.exemplars)))
            for labels, cell in self.cells.items()
        ]

    def render(
        self, snapshot: Iterable[tuple[tuple[str, ...], tuple[Any, ...]]], created: bool
    ) -> Metric:
        """The family as prometheus_client's ``Counter``/``Histogram`` would collect it."""
        metric = self.describe()
        add = metric.add_sample
        name = self.name
        for labelvalues, values in snapshot:
            labels = dict(zip(self.labelnames, labelvalues, strict=True))
            if self.type == "counter":
                value, created_at, stored = values
                add(name + "_total", labels, value, None, _exemplar(stored))
                if created:
                    add(name + "_created", labels, created_at, None, None)
                continue
            counts, total, created_at, exemplars = values
            acc = 0.0
            for le, count, stored in zip(self._le, counts, exemplars, strict=True):
                acc += count
                add(name + "_bucket", {**labels, "le": le}, acc, None, _exemplar(stored))
            add(name + "_count", labels, acc, None, None)
            if self.bounds[0] >= 0:  # prometheus_client leaves the sum out otherwise
                add(name + "_sum", labels, total, None, None)
            if created:
                add(name + "_created", labels, created_at, None, None)
        return metric


class FamiliesCollector(Collector):
    """Exposes ``families`` (in their order) to a prometheus_client registry; ``lock`` guards
    every cell and every family's series dict, for the recorder's updates and for scrapes."""

    def __init__(self, families: Sequence[Family]):
        self.families = tuple(families)
        self.lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        # The names a registry checks for duplicates and ?name[]= restricts by.
        return [family.describe() for family in self.families]

    def collect(self) -> Iterable[Metric]:
        with self.lock:
            snapshots = [family.snapshot() for family in self.families]
        created = _use_created()
        return [
            family.render(snapshot, created)
            for family, snapshot in zip(self.families, snapshots, strict=True)
        ]
