"""Attribute dialects of other GenAI instrumentation libraries, mapped to the canonical call.

The one mapping table is ``semconv/dialects.yaml``; it reaches the installed package (a wheel has
no ``semconv/``) as ``otel_llm/_dialects_table.py``, generated from it by
``python -m otel_llm.dialects`` and checked against it by ``tests/test_dialects.py``.

A span's dialect is found by its instrumentation scope name when the caller knows it, otherwise by
a marker attribute only that library writes. Each dialect adds its own names *after* the canonical
ones (canonical name, deprecated alias, then the dialect's), maps its provider values, and says
whether its input count includes the cache, so that the reader never counts a cached token twice
or not at all.
"""

from __future__ import annotations

import pprint
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from otel_llm import _semconv as sc
from otel_llm._dialects_table import DIALECTS as _TABLE

_TOKEN_FIELDS: Final = ("input", "output", "cache_read", "cache_creation", "reasoning")
_KEYS: Final = frozenset(
    {
        "id",
        "library",
        "scopes",
        "operation",
        "detect",
        "provider",
        "request_model",
        "response_model",
        "tokens",
        "input_includes_cache",
        "instrumentation_cost",
        "source",
    }
)


@dataclass(frozen=True, slots=True)
class Dialect:
    """How to read the spans of one instrumentation library; every name tuple is complete,
    canonical names first."""

    id: str | None
    scopes: tuple[str, ...] = ()
    operation_attribute: str | None = None
    operations: Mapping[str, str] = field(default_factory=dict)
    detect_attribute: str | None = None
    detect_values: frozenset[str] = frozenset()
    provider_names: tuple[str, ...] = (sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM)
    provider_values: Mapping[str, str] = field(default_factory=dict)
    request_model_names: tuple[str, ...] = (sc.GEN_AI_REQUEST_MODEL,)
    response_model_names: tuple[str, ...] = (sc.GEN_AI_RESPONSE_MODEL,)
    input_names: tuple[str, ...] = (sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_PROMPT_TOKENS)
    output_names: tuple[str, ...] = (
        sc.GEN_AI_USAGE_OUTPUT_TOKENS,
        sc.GEN_AI_USAGE_COMPLETION_TOKENS,
    )
    cache_read_names: tuple[str, ...] = (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,)
    cache_creation_names: tuple[str, ...] = (
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    )
    reasoning_names: tuple[str, ...] = (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,)
    input_includes_cache: bool = True
    input_includes_cache_by_provider: Mapping[str, bool] = field(default_factory=dict)
    instrumentation_cost: str | None = None

    def includes_cache(self, provider: str | None) -> bool:
        """Whether this dialect's input count includes cache reads and writes for a provider."""
        if provider is not None and provider in self.input_includes_cache_by_provider:
            return self.input_includes_cache_by_provider[provider]
        return self.input_includes_cache

    def dialect_names(self) -> set[str]:
        """The attribute names this dialect reads beyond the canonical ones."""
        canonical = CANONICAL
        names = {
            name
            for mine, base in (
                (self.provider_names, canonical.provider_names),
                (self.request_model_names, canonical.request_model_names),
                (self.response_model_names, canonical.response_model_names),
                (self.input_names, canonical.input_names),
                (self.output_names, canonical.output_names),
                (self.cache_read_names, canonical.cache_read_names),
                (self.cache_creation_names, canonical.cache_creation_names),
                (self.reasoning_names, canonical.reasoning_names),
            )
            for name in mine[len(base) :]
        }
        for name in (self.operation_attribute, self.detect_attribute, self.instrumentation_cost):
            if name is not None:
                names.add(name)
        return names


CANONICAL: Final = Dialect(id=None)
"""Spans of no known dialect: the conventions' names only."""


def _names(entry: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"dialect {entry.get('id')}: {key} must be a list of names")
    return tuple(value)


def _build(entry: Mapping[str, Any]) -> Dialect:
    unknown = set(entry) - _KEYS
    if unknown:
        raise ValueError(f"dialect {entry.get('id')}: unknown keys {sorted(unknown)}")
    operation = entry.get("operation") or {}
    detect = entry.get("detect") or {}
    provider = entry.get("provider") or {}
    tokens = entry.get("tokens") or {}
    if set(tokens) - set(_TOKEN_FIELDS):
        raise ValueError(f"dialect {entry['id']}: unknown token fields {sorted(tokens)}")
    includes = entry.get("input_includes_cache", True)
    by_provider: dict[str, bool] = {}
    if isinstance(includes, dict):
        by_provider = {k: bool(v) for k, v in includes.items() if k != "default"}
        includes = includes.get("default", True)
    canonical = CANONICAL
    return Dialect(
        id=str(entry["id"]),
        scopes=_names(entry, "scopes"),
        operation_attribute=operation.get("attribute"),
        operations=dict(operation.get("values", {})),
        detect_attribute=detect.get("attribute"),
        detect_values=frozenset(detect.get("values", [])),
        provider_names=canonical.provider_names + _names(provider, "attributes"),
        provider_values=dict(provider.get("values", {})),
        request_model_names=canonical.request_model_names + _names(entry, "request_model"),
        response_model_names=canonical.response_model_names + _names(entry, "response_model"),
        input_names=canonical.input_names + _names(tokens, "input"),
        output_names=canonical.output_names + _names(tokens, "output"),
        cache_read_names=canonical.cache_read_names + _names(tokens, "cache_read"),
        cache_creation_names=canonical.cache_creation_names + _names(tokens, "cache_creation"),
        reasoning_names=canonical.reasoning_names + _names(tokens, "reasoning"),
        input_includes_cache=bool(includes),
        input_includes_cache_by_provider=by_provider,
        instrumentation_cost=entry.get("instrumentation_cost"),
    )


DIALECTS: Final[tuple[Dialect, ...]] = tuple(_build(entry) for entry in _TABLE)
BY_ID: Final[dict[str, Dialect]] = {d.id: d for d in DIALECTS if d.id is not None}
BY_SCOPE: Final[dict[str, Dialect]] = {scope: d for d in DIALECTS for scope in d.scopes}

# For spans without gen_ai.operation.name: marker attribute -> {value: (operation, dialect)}.
# Only priced operations are kept, so a value absent here is "not a call".
OPERATION_MARKERS: Final[tuple[tuple[str, dict[str, tuple[str, Dialect]]], ...]] = tuple(
    (
        d.operation_attribute,
        {v: (op, d) for v, op in d.operations.items() if op in sc.PRICED_OPERATIONS},
    )
    for d in DIALECTS
    if d.operation_attribute is not None
)
# For spans that name their operation canonically: marker attribute -> {value: dialect}.
DETECT_MARKERS: Final[tuple[tuple[str, dict[str, Dialect]], ...]] = tuple(
    (d.detect_attribute, dict.fromkeys(d.detect_values, d))
    for d in DIALECTS
    if d.detect_attribute is not None
)


def operation_of(
    attributes: Mapping[str, Any], scope: str | None = None
) -> tuple[str, Dialect] | None:
    """The canonical operation and dialect of a span without ``gen_ai.operation.name``."""
    if scope is not None:
        dialect = BY_SCOPE.get(scope)
        if dialect is not None:
            if dialect.operation_attribute is None:
                return None
            value = attributes.get(dialect.operation_attribute)
            operation = dialect.operations.get(value) if isinstance(value, str) else None
            if operation is None or operation not in sc.PRICED_OPERATIONS:
                return None
            return operation, dialect
    for attribute, values in OPERATION_MARKERS:
        value = attributes.get(attribute)
        if value is not None and isinstance(value, str):
            found = values.get(value)
            if found is not None:
                return found
    return None


def dialect_of(attributes: Mapping[str, Any], scope: str | None = None) -> Dialect:
    """The dialect of a span that names its operation canonically (CANONICAL if none)."""
    if scope is not None:
        dialect = BY_SCOPE.get(scope)
        if dialect is not None:
            return dialect
    for attribute, values in DETECT_MARKERS:
        value = attributes.get(attribute)
        if value is not None and isinstance(value, str):
            found = values.get(value)
            if found is not None:
                return found
    return CANONICAL


# --- generating the table from semconv/dialects.yaml ---------------------------------------------

_HEADER = '''"""The attribute dialects table: generated from semconv/dialects.yaml, do not edit.

Regenerate with ``python -m otel_llm.dialects``; tests/test_dialects.py checks it is current.
"""

from __future__ import annotations

from typing import Any, Final

DIALECTS: Final[list[dict[str, Any]]] = '''


def render(model: Mapping[str, Any]) -> str:
    """The source of ``_dialects_table.py`` for the parsed ``dialects.yaml``."""
    return _HEADER + pprint.pformat(model["dialects"], width=99, sort_dicts=False) + "\n"


def main() -> None:  # pragma: no cover - a development tool, exercised through render()
    import yaml  # noqa: PLC0415 - only the generator needs it

    root = Path(__file__).resolve().parent.parent
    model = yaml.safe_load((root / "semconv" / "dialects.yaml").read_text())
    target = Path(__file__).resolve().parent / "_dialects_table.py"
    target.write_text(render(model))
    sys.stdout.write(f"wrote {target}\n")


if __name__ == "__main__":  # pragma: no cover
    main()
