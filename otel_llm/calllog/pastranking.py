"""Stats grouped by user, API key or status, from what past days add up to (``pastdays``).

``kept_groups`` answers from a kept entry of the days before today plus today's rows; an entry
is built by ranking every group of those days once (``_build``), or, when the day has turned,
derived from yesterday's (``_derived``: its first day taken away, yesterday added). Exact
either way: ``_rank`` decides the listed groups from the kept counts and today's, looks up the
groups today could lift, and gives way to the database's ranking when the kept bound is too
loose to tell.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from datetime import date
from typing import Any

from otel_llm.calllog import dailyranks, sql
from otel_llm.calllog.cardinality import OTHER
from otel_llm.calllog.dailyrows import (
    Deadline,
    Scan,
    Source,
    add_sketches,
    busiest_groups,
    requests_by_group,
    requests_of_groups,
    rows_of_groups,
    sums_by,
)
from otel_llm.calllog.pastdays import Kept, PastDays, Signature
from otel_llm.calllog.rollup import Totals

_KEPT_RANKED = 10_000
_KEPT_PER_LISTED = 10
"""What stats keep of past days ranks the busiest ``max(10,000, 10 * limit)`` groups (~1 MB):
every other group's requests are at most the last one's, which decides without them unless
today's calls could lift them to the ``limit``-th (then they are looked up) or they tie with it
(``_rank``). At 100,000 users over 7 days (2-3 calls each), keeping 1,000 had every user of
today looked up."""
_FOLD_LOOKUPS = 1000
"""A day added to a kept entry (``_derived``): the groups not kept with the most calls that day
whose requests are looked up (seeks per day and group) and kept, so that the most any other
can have had rises by one or two calls, not by the busiest newcomer's."""


def kept_groups(
    scan: Scan,
    base: Source,
    grouped: Source,
    *,
    column: str,
    days: dict[str, Totals],
    limit: int,
    kept: PastDays,
    today: date,
    deadline: Deadline,
    write: dailyranks.Write | None = None,
    later: dailyranks.Later | None = None,
) -> tuple[dict[str, Totals], Totals] | None:
    """The ``limit`` busiest groups (sums and sketches) and every call's sketches, from what
    ``kept`` has of the range's days before ``today`` (made now if it has none that is still
    exact) and today's rows; None: the database is to rank them (the range has no day before
    today, or too many groups tie with the last kept). ``write``, ``later``: the kept days' ranks
    (``dailyranks``) rank the days when nothing is kept; those missing are written by
    ``later``'s job, never by this answer."""
    if base.first is None or base.last is None or grouped.matches is None:
        return None
    first, last = base.first, base.last
    split = min(max(today, first), last)
    if split == first:
        return None
    signature = _signature(days, first, split)
    ranked = max(_KEPT_RANKED, _KEPT_PER_LISTED * limit)
    family = (base.table, grouped.table, column, grouped.matches, ranked)
    key = (*family, first, split)
    if kept.refused(key):
        return None
    before = grouped.between(first, split)
    ask: Callable[[], None] | None = None  # the store's job to write the days' ranks missing
    if write is not None and later is not None and not grouped.matches.text:
        catch_up = functools.partial(
            dailyranks.catch_up,
            scan,
            write,
            column=column,
            days=days,
            first=first,
            split=split,
            today=today,
        )
        ask = functools.partial(later, catch_up)

    def built() -> Kept:
        """The days [first, split) ranked by the database, kept."""
        made = _build(
            scan,
            base,
            grouped,
            column,
            first=first,
            split=split,
            signature=signature,
            ranked=ranked,
            deadline=deadline,
            ranks=None if ask is None else (ask, days, today),
        )
        kept.put(key, made)
        return made

    entry = kept.get(key, signature)
    derived = False
    if entry is None:
        entry = _derived(
            scan,
            base,
            grouped,
            column=column,
            days=days,
            family=family,
            first=first,
            split=split,
            limit=limit,
            kept=kept,
            deadline=deadline,
        )
        derived = entry is not None
    if derived and ask is not None:
        ask()  # the day turned: the ranks of the day that closed, written after this answer
    if entry is None:
        entry = built()
    now = grouped.between(split, last)
    current = requests_by_group(scan, grouped.table, column, now, deadline) if split < last else {}
    current.pop(OTHER, None)

    def requests_of(values: list[str]) -> dict[str, int]:
        return requests_of_groups(scan, grouped, column, values, before, deadline=deadline)

    listed = _rank(entry, current, limit, requests_of)
    if listed is None and derived:  # its bound is too loose to rank: the database ranks
        entry = built()
        listed = _rank(entry, current, limit, requests_of)
    if listed is None:
        kept.refuse(key)
        return None
    groups = {group: Totals() for group in listed}
    missing = [group for group in groups if group not in entry.listed]
    fetched = rows_of_groups(scan, grouped, column, missing, before, deadline=deadline)
    fetched.update((group, Totals()) for group in missing if group not in fetched)
    kept.keep_listed(entry, fetched)
    for group, totals in groups.items():
        totals.merge(entry.listed[group] if group in entry.listed else fetched[group])
    everything = Totals()
    everything.latency.merge(entry.everything.latency)
    everything.ttfc.merge(entry.everything.ttfc)
    if split < last:
        for group, totals in rows_of_groups(
            scan, grouped, column, groups, now, deadline=deadline
        ).items():
            groups[group].merge(totals)
        add_sketches(scan, base.table, base.between(split, last), everything, deadline)
    return groups, everything


def _signature(days: dict[str, Totals], first: date, last: date) -> Signature:
    """The sums of the days [first, last) among ``days`` (days without calls have none)."""
    start, end = first.isoformat(), last.isoformat()
    return tuple(
        sorted((day, tuple(sums.sums)) for day, sums in days.items() if start <= day < end)
    )


def _build(
    scan: Scan,
    base: Source,
    grouped: Source,
    column: str,
    *,
    first: date,
    split: date,
    signature: Signature,
    ranked: int,
    deadline: Deadline,
    ranks: tuple[Callable[[], None], dict[str, Totals], date] | None,
) -> Kept:
    """What is kept of the days [first, split), read from the database (the ranking of every
    group of those days: most of a first answer's time): from the days' ranks (``ranks``:
    how to ask for those missing, the range's sums by day, today) when unfiltered and kept,
    or from the daily rows."""
    busiest = None
    if ranks is not None:
        ask, days, today = ranks
        busiest = dailyranks.busiest(
            scan,
            column=column,
            days=days,
            first=first,
            split=split,
            today=today,
            count=ranked + 1,
            deadline=deadline,
            ask=ask,
        )
    if busiest is None:
        busiest = busiest_groups(
            scan,
            grouped.table,
            column,
            grouped.between(first, split),
            ranked + 1,
            deadline=deadline,
        )
    complete = len(busiest) <= ranked
    if not complete:
        busiest.popitem()
    everything = Totals()
    add_sketches(scan, base.table, base.between(first, split), everything, deadline)
    return Kept(signature, busiest, complete, everything)


def _derived(
    scan: Scan,
    base: Source,
    grouped: Source,
    *,
    column: str,
    days: dict[str, Totals],
    family: tuple[Any, ...],
    first: date,
    split: date,
    limit: int,
    kept: PastDays,
    deadline: Deadline,
) -> Kept | None:
    """What is kept of the days [first, split), made from an entry of other days of the same
    filter (``PastDays.nearest``: yesterday's answer's, when the day has turned) that is still
    exact: the days it has before ``first`` taken away and those it lacks before ``split``
    added, a day's rows by group each (~33,000 at 100,000 users) instead of ranking every
    group of the range again; None: there is none.

    Taking days away leaves every group's requests exact or lower: a group not kept had at
    most ``floor`` still. A day added raises the kept groups' exactly; one not kept, with
    calls that day, had at most ``floor`` plus them: the busiest of those (up to
    ``_FOLD_LOOKUPS`` with more than one call) are looked up and kept, and the floor rises by
    the most any other had. When it has risen too far to rank, ``kept_groups`` ranks anew."""
    near = kept.nearest(family, first, split)
    if near is None:
        return None
    start, end = near
    sums = dict(days)
    if start < first:
        sums.update(sums_by(scan, base.table, "day", base.between(start, first), deadline))
    signature = _signature(sums, start, end)
    entry = kept.get((*family, start, end), signature)
    if entry is None:
        return None
    busiest = dict(entry.busiest)
    listed = {group: _copy(totals) for group, totals in entry.listed.items()}
    everything = _copy(entry.everything)
    bound = entry.floor
    if start < first and not _taken_away(
        scan,
        base,
        grouped,
        column=column,
        days=(start, first),
        sums=sums,
        busiest=busiest,
        listed=listed,
        everything=everything,
        deadline=deadline,
    ):
        return None
    if end < split:
        bound += _added(
            scan,
            grouped,
            column=column,
            days=(end, split),
            complete=entry.complete,
            busiest=busiest,
            whole=grouped.between(first, split),
            deadline=deadline,
        )
    ordered = sorted(
        ((group, count) for group, count in busiest.items() if count > 0),
        key=lambda item: -item[1],
    )
    if not entry.complete and (len(ordered) < limit or bound >= ordered[limit - 1][1]):
        return None  # too loose to rank ``limit`` groups whatever today's calls: rank anew
    if end < split:
        new = grouped.between(end, split)
        for group, totals in rows_of_groups(
            scan, grouped, column, listed, new, deadline=deadline
        ).items():
            listed[group].merge(totals)
        add_sketches(scan, base.table, base.between(end, split), everything, deadline)
    made = Kept(
        _signature(days, first, split), dict(ordered), entry.complete, everything, bound=bound
    )
    kept.put((*family, first, split), made)
    kept.keep_listed(made, listed)
    return made


def _taken_away(
    scan: Scan,
    base: Source,
    grouped: Source,
    *,
    column: str,
    days: tuple[date, date],
    sums: dict[str, Totals],
    busiest: dict[str, int],
    listed: dict[str, Totals],
    everything: Totals,
    deadline: Deadline,
) -> bool:
    """Take the calls of ``days`` away from what an entry kept (its ``busiest`` groups',
    ``listed`` groups' and ``everything``); False: a call was stored on those days since their
    ``sums`` were compared with the entry's (what was taken is not what it had)."""
    gone = grouped.between(*days)
    for group, count in requests_by_group(scan, grouped.table, column, gone, deadline).items():
        if group in busiest:
            busiest[group] -= count
    for group, totals in rows_of_groups(
        scan, grouped, column, listed, gone, deadline=deadline
    ).items():
        _take(listed[group], totals)
    old = Totals()
    add_sketches(scan, base.table, base.between(*days), old, deadline)
    _take(everything, old)
    again = sums_by(scan, base.table, "day", base.between(*days), deadline)
    return _signature(again, *days) == _signature(sums, *days)


def _added(
    scan: Scan,
    grouped: Source,
    *,
    column: str,
    days: tuple[date, date],
    complete: bool,
    busiest: dict[str, int],
    whole: sql.Statement,
    deadline: Deadline,
) -> int:
    """Add the requests of ``days`` to an entry's ``busiest`` groups (every group with calls
    then too if it is ``complete``); the others' busiest of those days (``_FOLD_LOOKUPS``) are
    looked up over the ``whole`` range and kept. What the floor rises by: the most requests
    one of the rest had on those days."""
    others: dict[str, int] = {}
    added = requests_by_group(scan, grouped.table, column, grouped.between(*days), deadline)
    added.pop(OTHER, None)
    for group, count in added.items():
        if group in busiest:
            busiest[group] += count
        elif complete:  # it had no calls before
            busiest[group] = count
        else:
            others[group] = count
    heavy = sorted((group for group in others if others[group] > 1), key=others.__getitem__)
    heavy = heavy[-_FOLD_LOOKUPS:]
    if heavy:
        busiest.update(requests_of_groups(scan, grouped, column, heavy, whole, deadline=deadline))
        for group in heavy:
            del others[group]
    return max(others.values(), default=0)


def _copy(totals: Totals) -> Totals:
    copied = Totals()
    copied.merge(totals)
    return copied


def _take(totals: Totals, part: Totals) -> None:
    """Take ``part``'s calls (some of ``totals``') away, sums and sketches."""
    totals.subtract(part)
    totals.latency.subtract(part.latency)
    totals.ttfc.subtract(part.ttfc)


def _rank(
    entry: Kept,
    current: dict[str, int],
    limit: int,
    requests_of: Callable[[list[str]], dict[str, int]],
) -> list[str] | None:
    """The ``limit`` busiest groups of the days kept and today (``current``: today's requests
    by group), the unnamed last of a tie, then by name (code points, as SQLite's ``ORDER BY``);
    None: too many groups tie with the last kept for it to say which.

    A group not kept had at most ``entry.floor`` requests on those days: it is asked for
    (``requests_of``, a seek per day) only if that and today's could reach the ``limit``-th."""
    floor = entry.floor
    busiest = entry.busiest
    # Kept groups without calls today after the limit-th kept (and its ties) cannot pass it.
    counts = list(busiest.values())
    end = len(counts)
    if end > limit:
        end = limit
        while end < len(counts) and counts[end] == counts[limit - 1]:
            end += 1
    total = {group: busiest[group] for group in itertools.islice(busiest, end)}
    unsure: dict[str, int] = {}
    for group, count in current.items():
        if group in busiest:
            total[group] = busiest[group] + count
        else:
            unsure[group] = count
    if entry.complete:  # no other group had calls then
        total.update(unsure)
        unsure = {}
    ranked = sorted(total, key=lambda group: (-total[group], group == "", group))
    # The limit-th's requests: a group neither kept nor of today can have as many only if
    # the floor is that high (then which of them rank first is unknown here).
    edge = total[ranked[limit - 1]] if len(ranked) >= limit else 0
    if not entry.complete and floor >= edge:
        return None
    maybe = sorted(group for group, count in unsure.items() if floor + count >= edge)
    if maybe:
        before = requests_of(maybe)
        total.update((group, before.get(group, 0) + unsure[group]) for group in maybe)
        ranked = sorted(total, key=lambda group: (-total[group], group == "", group))
    return ranked[:limit]
