"""Every otel-llm setting, defined once.

Each setting is a keyword argument (of ``configure``, ``LLMSpanProcessor`` and the CLI) and an
``OTEL_LLM_*`` environment variable. Precedence: argument > environment > default. A bad value
-- from either place -- logs a warning and falls back to the next source, because a typo in a
telemetry setting must never stop the application it observes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from otel_llm.metrics.labels import parse_extra_labels

_logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: its keyword name, environment variable, default and validation."""

    name: str
    env: str
    default: T
    parse: Callable[[str], T]
    """Turns the environment variable's text into a value; raises ValueError when it cannot."""
    check: Callable[[Any], T]
    """Validates a value given as an argument (or parsed); raises ValueError/TypeError if bad."""
    doc: str
    fallback_env: str | None = None
    """A standard variable read when ``env`` is not set (e.g. the GenAI content-capture one)."""

    def resolve(self, argument: Any = None, environ: Mapping[str, str] | None = None) -> T:
        """The value in force: the argument if given and valid, else the environment, else
        the default."""
        if argument is not None:
            try:
                return self.check(argument)
            except (TypeError, ValueError) as exc:
                _logger.warning("otel-llm: ignoring %s=%r (%s)", self.name, argument, exc)
        environ = os.environ if environ is None else environ
        for env in (self.env, self.fallback_env):
            raw = environ.get(env) if env is not None else None
            if raw is not None and raw.strip() != "":
                try:
                    return self.check(self.parse(raw.strip()))
                except (TypeError, ValueError) as exc:
                    _logger.warning(
                        "otel-llm: ignoring %s=%r (%s); using %r", env, raw, exc, self.default
                    )
                    break
        return self.default


def _int_at_least(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        return value

    return check


def _optional_port(value: Any) -> int | None:
    port = _int_at_least(0)(value)
    if port > 65535:
        raise ValueError("must be a TCP port (0-65535)")
    return port or None  # 0 means "off", as an explicit way to override the environment


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def _optional_text(value: Any) -> str | None:
    return _text(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError("expected true or false")


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _extra_labels(value: Any) -> dict[str, str]:
    """``{label_name: span_attribute}``; a sequence of attribute names derives the label names."""
    return parse_extra_labels(value)


def _parse_extra_labels(raw: str) -> dict[str, str]:
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    mapping: dict[str, str] = {}
    for entry in entries:
        label, sep, attribute = entry.partition("=")
        mapping[label.strip() if sep else ""] = (attribute if sep else label).strip()
    return _extra_labels(mapping)


ENABLED: Setting[bool] = Setting(
    name="enabled",
    env="OTEL_LLM_ENABLED",
    default=True,
    parse=_parse_bool,
    check=_bool,
    doc="Master switch. When false, ``configure()`` installs nothing.",
)
PRICE_OVERRIDES: Setting[str | None] = Setting(
    name="price_overrides",
    env="OTEL_LLM_PRICE_OVERRIDES",
    default=None,
    parse=str,
    check=_optional_text,
    doc="Path of a YAML or JSON file of price overrides and model aliases (see README).",
)
EXTRA_LABELS: Setting[dict[str, str]] = Setting(
    name="extra_labels",
    env="OTEL_LLM_EXTRA_LABELS",
    default={},
    parse=_parse_extra_labels,
    check=_extra_labels,
    doc=(
        "Span attributes added as metric labels. Environment form: "
        "``feature=otel_llm.context.feature,team=app.team``; a bare attribute name gets the "
        "label name Prometheus' translation gives it (dots become underscores)."
    ),
)
MAX_LABEL_VALUES: Setting[int] = Setting(
    name="max_label_values",
    env="OTEL_LLM_MAX_LABEL_VALUES",
    default=200,
    parse=int,
    check=_int_at_least(1),
    doc=(
        "Distinct values kept per metric label (models, services, extra labels); later new "
        "values are reported as ``other`` so one bad attribute cannot explode cardinality."
    ),
)
MAX_TOKENS: Setting[int] = Setting(
    name="max_tokens",
    env="OTEL_LLM_MAX_TOKENS",
    default=100_000_000,
    parse=int,
    check=_int_at_least(1),
    doc="A token count above this is absurd for one call: it is ignored and counted, not priced.",
)
PRICE_CACHE_SIZE: Setting[int] = Setting(
    name="price_cache_size",
    env="OTEL_LLM_PRICE_CACHE_SIZE",
    default=4096,
    parse=int,
    check=_int_at_least(1),
    doc="Number of (provider, model) price look-ups remembered; the oldest is forgotten first.",
)
PROMETHEUS_PORT: Setting[int | None] = Setting(
    name="prometheus_port",
    env="OTEL_LLM_PROMETHEUS_PORT",
    default=None,
    parse=int,
    check=_optional_port,
    doc="When set, ``configure()`` serves ``/metrics`` on this port (0 or unset: no endpoint).",
)
PROMETHEUS_HOST: Setting[str] = Setting(
    name="prometheus_host",
    env="OTEL_LLM_PROMETHEUS_HOST",
    default="127.0.0.1",
    parse=str,
    check=_text,
    doc="Address the ``/metrics`` endpoint binds; set 0.0.0.0 to let a remote Prometheus scrape.",
)


def _parse_capture(raw: str) -> bool:
    # The legacy true/false and the newer modes; otel-llm records content on spans only.
    mode = raw.upper()
    if mode in {"SPAN_ONLY", "SPAN_AND_EVENT"}:
        return True
    if mode in {"NO_CONTENT", "EVENT_ONLY"}:
        return False
    return _parse_bool(raw)


CAPTURE_CONTENT: Setting[bool] = Setting(
    name="capture_content",
    env="OTEL_LLM_CAPTURE_CONTENT",
    fallback_env="OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    default=False,
    parse=_parse_capture,
    check=_bool,
    doc=(
        "Record prompts and responses on spans (``gen_ai.input.messages``, "
        "``gen_ai.output.messages``). Off by default: content is often personal data. "
        "Also read from the standard OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT "
        "(true/false, SPAN_ONLY, SPAN_AND_EVENT, NO_CONTENT, EVENT_ONLY)."
    ),
)
CONTENT_MAX_LENGTH: Setting[int] = Setting(
    name="content_max_length",
    env="OTEL_LLM_CONTENT_MAX_LENGTH",
    default=4096,
    parse=int,
    check=_int_at_least(1),
    doc="Characters kept of each captured content attribute; longer content is truncated.",
)
STREAM_INCLUDE_USAGE: Setting[bool] = Setting(
    name="stream_include_usage",
    env="OTEL_LLM_STREAM_INCLUDE_USAGE",
    default=False,
    parse=_parse_bool,
    check=_bool,
    doc=(
        "Add ``stream_options={'include_usage': True}`` to OpenAI streaming requests that do "
        "not set it, so streamed calls report token counts. Trade-off: the stream then ends "
        "with one extra chunk that has usage and no choices, which code iterating "
        "``chunk.choices[0]`` must tolerate. Off: such streams are marked usage-missing."
    ),
)

CORE: tuple[Setting[Any], ...] = (
    ENABLED,
    PRICE_OVERRIDES,
    EXTRA_LABELS,
    MAX_LABEL_VALUES,
    MAX_TOKENS,
    PRICE_CACHE_SIZE,
    PROMETHEUS_PORT,
    PROMETHEUS_HOST,
    CAPTURE_CONTENT,
    CONTENT_MAX_LENGTH,
    STREAM_INCLUDE_USAGE,
)

# --- The collector service (`otel-llm collector`) -------------------------------------------

COLLECTOR: tuple[Setting[Any], ...] = ()

# --- The call log (store, query API, retention) ---------------------------------------------

CALL_LOG: tuple[Setting[Any], ...] = ()

ALL: tuple[Setting[Any], ...] = (*CORE, *COLLECTOR, *CALL_LOG)
