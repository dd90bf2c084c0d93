"""The spans of a trace that are not LLM calls but belong in its cost tree: its root, its
agents and its tools (``otel_llm.tracecost.span_role``), kept beside the calls.

They come from the collector (every request's spans: ``collector/enrich.py`` picks them) and
from the in-process exporter (``exporter.py``). Spans of one trace arrive in any order, in
different requests, from different services; the table is keyed by (trace id, span id), so a
span delivered twice is kept once, and the tree is made when it is read (``traces.py``).

Bounded: at most ``MAX_SPANS_PER_TRACE`` spans of one trace are kept (a runaway loop of tool
calls cannot fill the table), each span's text is cut to the catalogue's text length, and
retention deletes them with the call records (``sqlstore.apply_retention``). A root span is
the one kind every trace has, LLM calls or not: the call log keeps a root only when its trace
has calls (``RootKeeper``), so a service's plain HTTP traces do not fill it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from otel_llm.calllog.catalogue import FUTURE_SLACK, TEXT_MAX_LENGTH, TIME_FLOOR
from otel_llm.calllog.record import micros_of
from otel_llm.calllog.schema import CALLS, TRACE_SPANS
from otel_llm.calllog.sql import Statement
from otel_llm.text import clean_text

MAX_SPANS_PER_TRACE = 1000
"""Non-call spans kept per trace, at most (the first ones stored win)."""

MAX_PENDING_ROOTS = 10_000
"""Root spans held in memory while no call of their trace is known (``RootKeeper``)."""

KINDS = ("root", "agent", "tool", "span")

COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "service",
    "agent_name",
    "start_us",
    "end_us",
)

Read = Callable[[Statement], list[tuple[Any, ...]]]
Execute = Callable[[Statement], int]

_IN_CHUNK = 500  # ids bound in one IN (...)
DAY_US = 86_400_000_000
NEAR_DAYS = 1
"""A trace's calls are looked for this many days either side of one of its spans' day: the
calls' trace index is (day, trace_id), so inserts touch only today's part of it."""
_ROWS_PER_INSERT = 100


@dataclass(frozen=True, slots=True)
class TraceSpan:
    """One kept span: ids as lower-case hex, times in microseconds since the epoch (UTC)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str | None
    agent_name: str | None
    start_us: int
    end_us: int | None

    def row(self) -> tuple[Any, ...]:
        return (
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.name,
            self.kind,
            self.service,
            self.agent_name,
            self.start_us,
            self.end_us,
        )


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = clean_text(value if isinstance(value, str) else str(value))
    return text[:TEXT_MAX_LENGTH]


def trace_span(
    *,
    trace_id: int,
    span_id: int,
    parent_span_id: int | None,
    name: Any,
    kind: str,
    service: Any,
    agent_name: Any,
    start_time_ns: int,
    end_time_ns: int | None,
    now: datetime | None = None,
) -> TraceSpan | None:
    """The kept form of one span; None for one without ids or with a start time no clock
    gives (before 2000, or past tomorrow), as for a call's record."""
    if not trace_id or not span_id or kind not in KINDS or trace_id >= 1 << 128:
        return None
    if span_id >= 1 << 64 or (parent_span_id or 0) >= 1 << 64:
        return None
    start = start_time_ns // 1000
    latest = micros_of((now or datetime.now(UTC)) + FUTURE_SLACK)
    if not micros_of(TIME_FLOOR) <= start <= latest:
        return None
    end = end_time_ns // 1000 if end_time_ns else None
    if end is not None and not start <= end <= latest:
        end = None
    return TraceSpan(
        trace_id=f"{trace_id:032x}",
        span_id=f"{span_id:016x}",
        parent_span_id=f"{parent_span_id:016x}" if parent_span_id else None,
        name=_text(name) or "",
        kind=kind,
        service=_text(service),
        agent_name=_text(agent_name),
        start_us=start,
        end_us=end,
    )


def write(read: Read, execute: Execute, spans: Iterable[TraceSpan]) -> int:
    """Store the spans not stored yet, up to ``MAX_SPANS_PER_TRACE`` per trace; the number
    newly stored. The calls of a trace whose root is among them learn its name."""
    unique = list({(span.trace_id, span.span_id): span for span in spans}.values())
    if not unique:
        return 0
    room = _room(read, sorted({span.trace_id for span in unique}))
    kept: list[TraceSpan] = []
    for span in unique:
        if room.get(span.trace_id, 0) > 0:
            room[span.trace_id] -= 1
            kept.append(span)
    stored = 0
    for start in range(0, len(kept), _ROWS_PER_INSERT):
        chunk = kept[start : start + _ROWS_PER_INSERT]
        marks = ", ".join(f"({', '.join('?' for _ in COLUMNS)})" for _ in chunk)
        stored += max(
            0,
            execute(
                Statement(
                    f"INSERT INTO {TRACE_SPANS} ({', '.join(COLUMNS)}) VALUES {marks} "  # noqa: S608
                    "ON CONFLICT (trace_id, span_id) DO NOTHING",
                    tuple(value for span in chunk for value in span.row()),
                )
            ),
        )
    for span in kept:
        if span.parent_span_id is None and span.name:  # the trace's root, of any kind
            name_calls(execute, span)
    return stored


def near_days(start_us: int) -> tuple[int, ...]:
    """The days (since the epoch) a trace's calls are looked for, around one of its spans."""
    day = start_us // DAY_US
    return tuple(range(day - NEAR_DAYS, day + NEAR_DAYS + 1))


def name_calls(execute: Execute, root: TraceSpan) -> int:
    """Give the calls of a trace stored before its root arrived the root's name."""
    days = near_days(root.start_us)
    return execute(
        Statement(
            f"UPDATE {CALLS} SET root_span_name = ? "  # noqa: S608
            f"WHERE day IN ({', '.join('?' for _ in days)}) AND trace_id = ? "
            "AND root_span_name IS NULL",
            (root.name, *days, root.trace_id),
        )
    )


def name_from_roots(execute: Execute, calls: Iterable[tuple[str, int]]) -> int:
    """Give calls just stored -- (trace id, day) pairs -- the name of their trace's root, if it
    is kept already."""
    by_day: dict[int, set[str]] = {}
    for trace_id, day in calls:
        by_day.setdefault(day, set()).add(trace_id)
    changed = 0
    for day, traces in sorted(by_day.items()):
        ids = sorted(traces)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            changed += execute(
                Statement(
                    f"UPDATE {CALLS} SET root_span_name = (SELECT s.name FROM {TRACE_SPANS} s "  # noqa: S608
                    f"WHERE s.trace_id = {CALLS}.trace_id "
                    "AND s.parent_span_id IS NULL LIMIT 1) "
                    f"WHERE day = ? AND trace_id IN ({', '.join('?' for _ in chunk)}) "
                    "AND root_span_name IS NULL",
                    (day, *chunk),
                )
            )
    return changed


def _room(read: Read, trace_ids: Sequence[str]) -> dict[str, int]:
    room = dict.fromkeys(trace_ids, MAX_SPANS_PER_TRACE)
    for start in range(0, len(trace_ids), _IN_CHUNK):
        chunk = trace_ids[start : start + _IN_CHUNK]
        rows = read(
            Statement(
                f"SELECT trace_id, COUNT(*) FROM {TRACE_SPANS} "  # noqa: S608
                f"WHERE trace_id IN ({', '.join('?' for _ in chunk)}) GROUP BY trace_id",
                tuple(chunk),
            )
        )
        for trace_id, count in rows:
            room[trace_id] = MAX_SPANS_PER_TRACE - int(count)
    return room


def traces_with_calls(read: Read, roots: Sequence[TraceSpan]) -> set[str]:
    """The traces of ``roots`` that have a stored call near the root's day."""
    by_days: dict[tuple[int, ...], set[str]] = {}
    for root in roots:
        by_days.setdefault(near_days(root.start_us), set()).add(root.trace_id)
    found: set[str] = set()
    for days, traces in by_days.items():
        ids = sorted(traces)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            found.update(
                row[0]
                for row in read(
                    Statement(
                        f"SELECT DISTINCT trace_id FROM {CALLS} "  # noqa: S608
                        f"WHERE day IN ({', '.join('?' for _ in days)}) "
                        f"AND trace_id IN ({', '.join('?' for _ in chunk)})",
                        (*days, *chunk),
                    )
                )
            )
    return found


def spans_of(read: Read, trace_id: str) -> list[TraceSpan]:
    """The kept spans of one trace, oldest first."""
    rows = read(
        Statement(
            f"SELECT {', '.join(COLUMNS)} FROM {TRACE_SPANS} WHERE trace_id = ? "  # noqa: S608
            "ORDER BY start_us, span_id LIMIT ?",
            (trace_id, MAX_SPANS_PER_TRACE),
        )
    )
    return [
        TraceSpan(str(r[0]), str(r[1]), r[2], str(r[3]), str(r[4]), r[5], r[6], int(r[7]), r[8])
        for r in rows
    ]


def of_traces(read: Read, trace_ids: Sequence[str]) -> list[TraceSpan]:
    """The kept roots and agents of several traces (a list page's names and agents)."""
    found: list[TraceSpan] = []
    for start in range(0, len(trace_ids), _IN_CHUNK):
        chunk = trace_ids[start : start + _IN_CHUNK]
        rows = read(
            Statement(
                f"SELECT {', '.join(COLUMNS)} FROM {TRACE_SPANS} "  # noqa: S608
                f"WHERE trace_id IN ({', '.join('?' for _ in chunk)}) "
                "AND kind IN ('root', 'agent')",
                tuple(chunk),
            )
        )
        found.extend(
            TraceSpan(str(r[0]), str(r[1]), r[2], str(r[3]), str(r[4]), r[5], r[6], int(r[7]), r[8])
            for r in rows
        )
    return found


def older_than(cutoff_us: int) -> Statement:
    """Retention: the spans that started before ``cutoff_us``."""
    return Statement(f"DELETE FROM {TRACE_SPANS} WHERE start_us < ?", (cutoff_us,))  # noqa: S608


class RootKeeper:
    """Decides which spans of the collector's requests are stored: agents, tools and local
    roots always (they are about LLM work); a trace's root only once its trace has a call.

    A root whose trace has no call yet -- most traces have none, and a trace's calls may come
    in a later request from another service -- waits in memory, at most
    ``MAX_PENDING_ROOTS`` of them (the oldest is dropped first), and is stored with the first
    call of its trace. A restart forgets the waiting roots: their trees then show the calls
    without the root's name.
    """

    def __init__(self, max_pending: int = MAX_PENDING_ROOTS):
        self.max_pending = max_pending
        self._pending: OrderedDict[str, TraceSpan] = OrderedDict()
        self._lock = threading.Lock()
        self.dropped = 0
        """Roots given up to the bound."""

    def to_store(
        self, read: Read, spans: Sequence[TraceSpan], call_traces: Iterable[str]
    ) -> list[TraceSpan]:
        """Of ``spans``, those to store now, plus the waiting roots of the traces of
        ``call_traces`` (calls just stored) and of any trace found to have calls."""
        roots = [span for span in spans if span.kind == "root"]
        keep = [span for span in spans if span.kind != "root"]
        called = set(call_traces)
        unknown = [root for root in roots if root.trace_id not in called]
        if unknown:
            called |= traces_with_calls(read, unknown)
        with self._lock:
            for root in roots:
                if root.trace_id in called:
                    keep.append(root)
                else:
                    self._pending[root.trace_id] = root
                    self._pending.move_to_end(root.trace_id)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
                self.dropped += 1
            for trace_id in called:
                waiting = self._pending.pop(trace_id, None)
                if waiting is not None:
                    keep.append(waiting)
        return keep

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)
