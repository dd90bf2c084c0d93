"""Budget windows in time: where the one holding an instant starts and ends.

Instants are integer nanoseconds since the epoch (a span's own unit), so a call at
23:59:59.999999999 UTC is in its day, and nothing is lost to float rounding. Calendar windows
are UTC: a day from midnight, an ISO week from Monday, a month from the 1st (28 to 31 days,
read from the calendar). A rolling window of N hours moves minute by minute: it holds the
minutes from (the current minute - N hours) up to now, so its spend can be kept in per-minute
sums (at most N * 60 of them) and read back from the store the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from otel_llm.policies.model import Window

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONDAY_EPOCH_OFFSET_NS = 3 * DAY_NS  # 1970-01-01 was a Thursday; 1969-12-29 a Monday


def bounds(window: Window, instant_ns: int) -> tuple[int, int]:
    """[start, end) of the window holding ``instant_ns``. For a rolling window: the first
    minute it holds, and the end of the current minute (when its oldest minute leaves)."""
    if window.kind == "day":
        start = instant_ns - instant_ns % DAY_NS
        return start, start + DAY_NS
    if window.kind == "week":
        start = instant_ns - (instant_ns + _MONDAY_EPOCH_OFFSET_NS) % (7 * DAY_NS)
        return start, start + 7 * DAY_NS
    if window.kind == "month":
        moment = _EPOCH + timedelta(microseconds=instant_ns // 1000)
        first = datetime(moment.year, moment.month, 1, tzinfo=UTC)
        following = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
        return _ns(first), _ns(following)
    minute = minute_of(instant_ns)
    return minute - window.hours * HOUR_NS + MINUTE_NS, minute + MINUTE_NS


def minute_of(instant_ns: int) -> int:
    """The start of the minute holding ``instant_ns``."""
    return instant_ns - instant_ns % MINUTE_NS


def _ns(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND_NS + delta.microseconds * 1000


def iso(instant_ns: int) -> str:
    """ISO 8601 UTC with ``Z`` (microseconds), as the call-log API writes times."""
    moment = _EPOCH + timedelta(microseconds=instant_ns // 1000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
