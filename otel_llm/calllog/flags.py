"""The filter flags of ``otel-llm calls``, made from the catalogue's filters, and read back as
the query API's own parameters (which ``params.py`` then checks, for a store as for an API).

Each filter parameter is a flag of the same name (``api_key_id`` -> ``--api-key-id``), but the
time range: ``--since`` / ``--until`` (``start_date`` / ``end_date``), which also take an age.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from otel_llm.calllog.catalogue import (
    CHOICE_MATCHES,
    FLAG_MATCHES,
    RANGES,
    STATS_MATCHES,
    TEXT_MATCHES,
    TIME_FILTERS,
)
from otel_llm.calllog.paramvalues import MIN_MOMENT

_TIME_FLAGS = dict(zip(("since", "until"), TIME_FILTERS, strict=True))
"""Flag -> the parameter it gives."""
_TIME_HELP = "ISO date/date-time (2025-01-10, 2025-01-10T12:00Z) or an age: 30m, 24h, 7d, 2w"
_RELATIVE = re.compile(r"([0-9]+)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def add_filter_flags(group: Any, *, stats: bool) -> None:
    """Add the filters of list and count, or (``stats``) those stats accept, to ``group``."""
    for match in TEXT_MATCHES:
        if not stats or match.name in STATS_MATCHES:
            group.add_argument(_flag(match.name), metavar="NAME", help=match.help)
    group.add_argument("--since", metavar="WHEN", help=f"calls at or after WHEN: {_TIME_HELP}")
    group.add_argument(
        "--until", metavar="WHEN", help="calls before WHEN (a bare date: through that day)"
    )
    for match in CHOICE_MATCHES:
        if not stats or match.name in STATS_MATCHES:
            group.add_argument(_flag(match.name), choices=match.choices, help=match.help)
    if stats:
        return
    for match in FLAG_MATCHES:
        group.add_argument(_flag(match.name), choices=match.choices, help=match.help)
    for rng in RANGES:
        group.add_argument(f"--min-{rng.name}", metavar=rng.unit, help=f"{rng.name} at least")
        group.add_argument(f"--max-{rng.name}", metavar=rng.unit, help=f"{rng.name} at most")


def filter_params(args: argparse.Namespace) -> dict[str, str]:
    """The API parameters of the filter flags given (a flag a subcommand lacks is not given)."""
    given: dict[str, str] = {}
    for match in TEXT_MATCHES:
        value = getattr(args, match.name, None)
        if value is not None:
            given[match.name] = value
    for flag, name in _TIME_FLAGS.items():
        if getattr(args, flag, None) is not None:
            given[name] = when(getattr(args, flag))
    names = [
        *(match.name for match in (*CHOICE_MATCHES, *FLAG_MATCHES)),
        *(f"{bound}_{rng.name}" for rng in RANGES for bound in ("min", "max")),
    ]
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            given[name] = value
    return given


def when(text: str) -> str:
    """An age (``24h``) as the ISO date-time that long ago; anything else as given. An age older
    than the earliest moment the API takes is that moment: it means "from the start"."""
    match = _RELATIVE.fullmatch(text.strip().lower())
    if match is None:
        return text
    try:
        moment = max(datetime.now(UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])}), MIN_MOMENT)
    except OverflowError:  # before year 1 (a traceback, not an answer)
        moment = MIN_MOMENT
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
