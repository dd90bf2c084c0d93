"""Metric labels: which span attributes fill the extra ones, and the cap on distinct values.

Which span attributes become labels (and their names) is a setting: see
``otel_llm.settings.parse_extra_labels``; ``agent_label`` adds the agent's.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm.text import clean_label_value

AGENT_LABEL = "gen_ai_agent_name"


def extra_metric_labels(
    extra_labels: Mapping[str, str] | Sequence[str] | None, agent_label: bool | None
) -> dict[str, str]:
    """Label name -> span attribute of the labels after the standard ones, as the settings
    (``extra_labels``, ``agent_label``) and these arguments say."""
    labels = dict(settings.EXTRA_LABELS.resolve(extra_labels))
    if settings.AGENT_LABEL.resolve(agent_label):
        labels.setdefault(AGENT_LABEL, sc.GEN_AI_AGENT_NAME)
    return labels


OVERFLOW = "other"
"""The value every label value past the cap is reported as."""

_MAX_VALUE_LENGTH = 200


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
        # A client's model name can carry a lone surrogate or a NUL: either would make every
        # later scrape fail to encode (one bad span, /metrics down until restart).
        value = clean_label_value(value, _MAX_VALUE_LENGTH)
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if value in seen:
                return value
            if len(seen) >= self._max_values:
                return OVERFLOW
            seen.add(value)
            return value
