"""Metric label values: the user's extra labels and the cap on distinct values per label."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from otel_llm import _semconv as sc

OVERFLOW = "other"
"""The value every label value past the cap is reported as."""

_MAX_VALUE_LENGTH = 200
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED = {*sc.STANDARD_LABELS, sc.TOKEN_TYPE_LABEL, sc.REASON_LABEL, "le", "trace_id"}


def label_name_for(attribute: str) -> str:
    """The label name Prometheus' translation gives an attribute (non-alphanumerics -> ``_``)."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", attribute)
    return f"_{name}" if name[:1].isdigit() else name


def parse_extra_labels(value: Any) -> dict[str, str]:
    """``{label: attribute}`` from a mapping or from a list of attribute names.

    Raises ValueError/TypeError with the reason when a name is unusable.
    """
    if isinstance(value, Mapping):
        pairs: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
        pairs = (("", attribute) for attribute in value)
    else:
        raise TypeError("expected a mapping of label -> attribute or a list of attributes")
    result: dict[str, str] = {}
    for given, attribute in pairs:
        if not isinstance(attribute, str) or not attribute or not isinstance(given, str):
            raise TypeError(f"bad extra label {given!r} -> {attribute!r}")
        label = given or label_name_for(attribute)
        if not _LABEL_NAME.match(label) or label.startswith("__"):
            raise ValueError(f"{label!r} is not a valid Prometheus label name")
        if label in _RESERVED:
            raise ValueError(f"{label!r} is a label otel-llm sets itself")
        result[label] = attribute
    return result


class LabelLimiter:
    """Keeps at most ``max_values`` distinct values per label; the rest become ``other``.

    Each label has its own budget, so a flood of model names cannot push the services out.
    """

    def __init__(self, max_values: int):
        self._max_values = max_values
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, label: str, value: str) -> str:
        seen = self._seen.get(label)
        if seen is not None and value in seen:
            return value
        if len(value) > _MAX_VALUE_LENGTH:
            value = value[:_MAX_VALUE_LENGTH]
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if value in seen:
                return value
            if len(seen) >= self._max_values:
                return OVERFLOW
            seen.add(value)
            return value
