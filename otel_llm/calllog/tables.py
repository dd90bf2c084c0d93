"""How ``otel-llm calls`` prints: aligned tables and name/value lists of the API's JSON.

Money shows with ``$`` and every significant digit (an unknown cost is ``unknown``, never $0),
durations in ms, rates in %, datetimes to the second with their ``Z``. ``otel-llm demo``
prints its own cells with ``table`` too.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Container, Mapping, Sequence
from decimal import Decimal
from typing import Any

_MAX_CELL = 48


def print_line(text: str) -> int:
    print(text)
    return 0


def print_json(value: Any) -> int:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


def cell(name: str, value: Any, *, wide: bool = False) -> str:
    """A value as a table shows it: money with $, times without the microseconds, rates in %."""
    text: str
    if value is None:
        text = "unknown" if name in ("cost", "total_cost") else "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif name in _MONEY or name.startswith("cost_"):
        text = _money(value)
    elif name.endswith("_rate") and isinstance(value, int | float):
        text = f"{value:.1f}%"
    elif name.endswith("_ms") and isinstance(value, int | float):
        text = f"{value:,.0f} ms" if value >= 10 else f"{value:.2f} ms"
    elif isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, float):
        text = f"{value:,.2f}"
    elif name == "models" and isinstance(value, list):
        text = ", ".join(f"{m.get('model')} ({m.get('requests')})" for m in value)
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, str) and _ISO.fullmatch(value):
        text = value[:19].replace("T", " ") + "Z"
    else:
        text = str(value)
    text = " ".join(text.split())  # a newline in an error message would break the table
    if not wide and len(text) > _MAX_CELL and name not in ("id", "trace_id"):
        text = text[: _MAX_CELL - 1] + "…"
    return text


_MONEY = {"cost", "total_cost", "input", "output", "cache_read", "cache_write", "request"}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


def _money(value: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    # Via the shortest repr: 1.5e-05 shows as $0.000015, not a rounded or binary-noisy figure.
    return "$" + format(Decimal(repr(value)).normalize(), "f")


def flatten(stats: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in stats.items():
        if isinstance(value, Mapping):
            pairs += flatten(value, f"{prefix}{name}.")
        else:
            pairs.append((f"{prefix}{name}", cell(name, value)))
    return pairs


def pairs(pairs: Sequence[tuple[str, str]]) -> str:
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in pairs)


def table(
    columns: Sequence[str] | None,
    rows: Sequence[Sequence[str] | None],
    *,
    right: Container[int] | None = None,
    header_rule: bool = True,
) -> str:
    """Aligned columns, under a header line unless ``columns`` is None; a ``None`` row is a rule.

    ``right`` holds the indexes of the right-aligned columns; by default those whose cells are
    all numbers (or money, durations). ``header_rule=False``: no rule under the header.
    """
    body = [row for row in rows if row is not None]
    if not body:
        return "(no calls)"
    sized = body if columns is None else [columns, *body]
    widths = [max(len(row[i]) for row in sized) for i in range(len(body[0]))]
    aligned = right
    if aligned is None:
        aligned = {i for i in range(len(widths)) if all(_numeric(row[i]) for row in body)}

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if i in aligned else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    rule = line(["-" * width for width in widths])
    lines = [] if columns is None else [line(columns), *([rule] if header_rule else [])]
    return "\n".join(lines + [rule if row is None else line(row) for row in rows])


def _numeric(cell: str) -> bool:
    return cell in ("-", "unknown") or bool(re.fullmatch(r"\$?-?[\d,]+(\.\d+)?( ms|%)?", cell))
