"""Messages (or parts) as JSON text of at most ``max_length`` characters, still valid JSON.

Texts keep their start and end with ``…[truncated N chars]``; the budget is shared max-min fair
so that short texts stay whole and long ones are cut to the same length. When even the message
structure does not fit, trailing parts and messages are dropped and a final text part says how
many.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from otel_llm.instrumentation.messages import STRUCTURAL_PART_KEYS, Message, Part, text_part


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _escaped_length(text: str) -> int:
    return len(_dumps(text)) - 2


_TWO_CHAR_ESCAPES: Final = frozenset('"\\\n\r\t\b\f')


def _char_length(char: str) -> int:
    if char in _TWO_CHAR_ESCAPES:
        return 2
    return 6 if char < " " else 1


def _marker(dropped: int) -> str:
    return f"…[truncated {dropped} chars]"


def _omitted_marker(parts: int, messages: int) -> Part:
    counts = []
    if parts:
        counts.append(f"{parts} part{'s' if parts != 1 else ''}")
    if messages:
        counts.append(f"{messages} message{'s' if messages != 1 else ''}")
    return text_part(f"…[truncated: {' and '.join(counts)} omitted]")


@dataclass
class _Slot:
    """One content value of a part that truncation may shorten."""

    part: Part
    key: str
    text: str
    original: Any
    """The value as it was, restored when it is kept whole (a dict stays a dict)."""
    need: int
    marker: int

    @property
    def least(self) -> int:
        return min(self.need, self.marker)

    def cost(self, level: int) -> int:
        if self.need <= level or self.marker >= self.need:
            return self.need
        return max(level, self.marker)


def _slots(parts: list[Part]) -> list[_Slot]:
    found = []
    for part in parts:
        for key, value in part.items():
            if key in STRUCTURAL_PART_KEYS:
                continue
            if isinstance(value, str):
                text = value
            elif isinstance(value, dict | list):
                text = _dumps(value)
            else:
                continue
            found.append(
                _Slot(part, key, text, value, _escaped_length(text), len(_marker(len(text))))
            )
    return found


def _truncate(text: str, allowed: int) -> str:
    """The start of ``text`` and a marker, escaped length at most ``allowed``."""
    room = allowed - len(_marker(len(text)))
    kept = used = 0
    for char in text:
        used += _char_length(char)
        if used > room:
            break
        kept += 1
    return text[:kept] + _marker(len(text) - kept)


def _fill(slots: list[_Slot], budget: int) -> None:
    """Shares ``budget`` characters among the slots (max-min fair) and truncates them in place."""
    low, high = 0, max((slot.need for slot in slots), default=0)
    while low < high:
        level = (low + high + 1) // 2
        if sum(slot.cost(level) for slot in slots) <= budget:
            low = level
        else:
            high = level - 1
    spare = budget - sum(slot.cost(low) for slot in slots)
    for slot in slots:
        allowed = slot.cost(low)
        if allowed < slot.need and spare > 0:
            extra = min(spare, slot.need - allowed)
            spare -= extra
            allowed += extra
        if allowed >= slot.need:
            slot.part[slot.key] = slot.original
        else:
            slot.part[slot.key] = _truncate(slot.text, allowed)


class _Document:
    """A list of messages (or of parts) that can keep only its first ``n`` parts."""

    def __init__(self, items: list[Any], *, of_messages: bool) -> None:
        self.items = items
        self.of_messages = of_messages
        # Units in order: (message index, part index or None for a message without parts).
        self.units: list[tuple[int, int | None]] = []
        if of_messages:
            for index, msg in enumerate(items):
                count = len(msg["parts"])
                self.units.extend([(index, i) for i in range(count)] if count else [(index, None)])
        else:
            self.units = [(0, i) for i in range(len(items))]

    def keep(self, count: int) -> tuple[list[Any], list[Part]]:
        """Copies of the first ``count`` units (plus an omission marker) and their parts."""
        if not self.of_messages:
            parts = [dict(part) for part in self.items[:count]]
            omitted = len(self.items) - count
            return ([*parts, _omitted_marker(omitted, 0)] if omitted else parts), parts
        kept: list[Message] = []
        kept_index = -1
        all_parts: list[Part] = []
        for index, part_index in self.units[:count]:
            if index != kept_index:
                kept.append({**self.items[index], "parts": []})
                kept_index = index
            if part_index is not None:
                part = dict(self.items[index]["parts"][part_index])
                kept[-1]["parts"].append(part)
                all_parts.append(part)
        if count < len(self.units):
            # Whole messages dropped, and parts dropped from the last, partly kept message.
            messages = len(self.items) - len(kept)
            dropped = sum(1 for index, _ in self.units[count:] if index == kept_index)
            marker = _omitted_marker(dropped, messages)
            if kept:
                kept[-1]["parts"].append(marker)
            else:
                first = self.items[0]
                kept.append({"role": first.get("role", "user"), "parts": [marker]})
        return kept, all_parts


def _fitted(doc: _Document, count: int, max_length: int) -> str | None:
    """The JSON of the first ``count`` units, truncated to fit, or None if even that fails."""
    items, parts = doc.keep(count)
    slots = _slots(parts)
    for slot in slots:
        slot.part[slot.key] = ""
    skeleton = len(_dumps(items))
    budget = max_length - skeleton
    if budget < sum(slot.least for slot in slots):
        return None
    _fill(slots, budget)
    text = _dumps(items)
    return text if len(text) <= max_length else None


def bounded_json(items: list[Any], max_length: int, *, of_messages: bool) -> str | None:
    """The JSON text of already redacted messages (or parts), at most ``max_length`` characters.

    None when not even an empty array fits.
    """
    text = _dumps(items)
    if len(text) <= max_length:
        return text
    doc = _Document(items, of_messages=of_messages)
    total = len(doc.units)
    whole = _fitted(doc, total, max_length)
    if whole is not None:
        return whole
    # Keep the longest prefix of parts that fits (with its omission marker).
    low, high = 0, total - 1
    best: str | None = None
    while low <= high:
        count = (low + high) // 2
        fitted = _fitted(doc, count, max_length)
        if fitted is not None:
            best, low = fitted, count + 1
        else:
            high = count - 1
    if best is not None:
        return best
    return "[]" if max_length >= 2 else None
