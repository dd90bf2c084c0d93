"""Reading one LLM call out of a span's attributes.

This is the processor's input side: current GenAI names first, deprecated names as fallback,
and every value checked before it is trusted. A value that is the wrong type, negative, NaN or
absurdly large is ignored and reported as a ``Rejected`` entry (the processor counts them), so a
broken instrumentation shows up on a dashboard instead of as a wrong bill.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from otel_llm import _semconv as sc
from otel_llm.dialects import (
    BY_SCOPE,
    CANONICAL,
    DETECT_MARKERS,
    OPERATION_MARKERS,
    Dialect,
    dialect_of,
    operation_of,
)

OPERATION_MARKER_NAMES = tuple(attribute for attribute, _ in OPERATION_MARKERS)
"""The attributes by which another library's span names an operation without
``gen_ai.operation.name`` (``may_be_llm_call``)."""
_OPERATION_MARKER_NAMES = OPERATION_MARKER_NAMES
_DETECT_MARKER_NAMES = tuple(attribute for attribute, _ in DETECT_MARKERS)

# The bound on a provider-reported cost for one call; anything above is a unit mistake.
_MAX_PROVIDER_COST_USD = 100_000


class Rejected(NamedTuple):
    """An attribute value that was present but not trusted."""

    attribute: str
    reason: str  # wrong_type | negative | not_finite | not_integer | absurd | unsupported_currency


@dataclass(slots=True)
class LLMCall:
    """One LLM call, in canonical form (token counts follow the OTel conventions)."""

    operation: str
    provider: str | None
    request_model: str | None
    response_model: str | None
    input_tokens: int | None
    """All input tokens, cache reads and writes included."""
    output_tokens: int | None
    """All output tokens, reasoning included."""
    cache_read_tokens: int | None
    cache_creation_tokens: int | None
    reasoning_tokens: int | None
    error_type: str | None
    streaming: bool
    time_to_first_chunk: float | None
    """Seconds from the request to the first chunk with content (streamed calls)."""
    provider_cost: Decimal | None
    """Cost reported by the provider itself, when the span carries one."""
    usage_missing: bool
    """The instrumentation said the token counts are missing (e.g. a stream without usage)."""
    usage_rejected: bool
    """A token count was present but not trustworthy; the call must not be priced from the rest."""
    dialect: str | None = None
    """The dialect (semconv/dialects.yaml) of the library whose span this was, if any."""
    instrumentation_cost: Decimal | None = None
    """A cost the instrumentation computed from its own price table (OpenLIT's gen_ai.usage.cost):
    for comparison only, never used as the call's price."""

    @property
    def model(self) -> str | None:
        """The model the call was billed for: the response's if known, else the request's."""
        return self.response_model or self.request_model


def may_be_llm_call(attributes: Mapping[str, Any]) -> bool:
    """The cheapest pre-test, without the scope: False for most spans, which carry neither an
    operation name nor another library's marker attribute."""
    if sc.GEN_AI_OPERATION_NAME in attributes:
        return True
    # A loop, not any(...) over a generator: this runs on every span, and the generator
    # alone tripled its cost.
    for attribute in _OPERATION_MARKER_NAMES:  # noqa: SIM110 - see above
        if attribute in attributes:
            return True
    return False


def is_llm_call(attributes: Mapping[str, Any], scope: str | None = None) -> bool:
    """Cheap test used on every span: is this an inference or embeddings call?

    ``scope`` is the span's instrumentation scope name, if known: it identifies the dialect of
    other instrumentation libraries more reliably than their marker attributes.
    """
    operation = attributes.get(sc.GEN_AI_OPERATION_NAME)
    if operation is None:
        # No canonical operation: another library's dialect may still name one. Whatever the
        # scope, a dialect call carries its marker: without one (most spans), this is all.
        for attribute in _OPERATION_MARKER_NAMES:
            if attribute in attributes:
                return operation_of(attributes, scope) is not None
        return False
    # A list (unhashable) is a possible attribute value; only a string can name an operation.
    return isinstance(operation, str) and operation in sc.PRICED_OPERATIONS


def read_call(
    attributes: Mapping[str, Any], *, max_tokens: int, scope: str | None = None
) -> tuple[LLMCall | None, list[Rejected]]:
    """The call a span describes, or None if it is not an LLM call; plus the values rejected.

    ``scope`` is the span's instrumentation scope name, if known (see ``otel_llm.dialects``).
    Spans in the common form take ``read_call_fast``; every other one the full reader.
    """
    call = read_call_fast(attributes, max_tokens=max_tokens, scope=scope)
    if call is not None:
        return call, []
    return read_call_full(attributes, max_tokens=max_tokens, scope=scope)


def read_call_fast(
    attributes: Mapping[str, Any], *, max_tokens: int, scope: str | None = None
) -> LLMCall | None:
    """The call of a span in the common form (``read_common``), or None: then
    ``read_call_full`` must read it."""
    fields = read_common(attributes, max_tokens, scope)
    return LLMCall(*fields) if fields is not None else None


CommonFields = tuple[
    str, str | None, str | None, str | None, int | None, int | None, int | None, int | None,
    int | None, str | None, bool, float | None, None, bool, bool,
]  # fmt: skip
"""``LLMCall``'s fields, positionally, as ``read_common`` reads them."""


def read_common(
    attributes: Mapping[str, Any], max_tokens: int, scope: str | None
) -> CommonFields | None:
    """The fields of the call of a span in the common form, in ``LLMCall``'s order, or None:
    then ``read_call_full`` must read it. The processor's one pass uses them without making
    the ``LLMCall`` (the constructor is a tenth of that pass).

    The common form is what otel-llm's own spans and the conventions' other instrumentations
    write: a priced ``gen_ai.operation.name``, no other library's dialect (by scope or marker),
    the current names with values of their plain types (str, int counts within ``max_tokens``,
    a finite float time to first chunk), no deprecated name of a token count or the provider,
    and no provider-reported cost. Such a span has nothing to reject, map or choose
    between, so it is read directly (about a third of the full reader's time); anything else --
    an alias, a wrong type, a bad count, a dialect, a provider's cost -- returns None, and the
    full reader decides as it always has. ``tests/test_call_reader.py`` checks, over random
    attributes, that a call read here is the one the full reader reads, with nothing rejected.
    """
    # Written flat, each constant a module global: this runs on every LLM span (twice as fast
    # as it was through a helper, a loop per check and the _semconv module's attributes:
    # 1.3 -> 0.9 µs on processor_overhead.py's GenAI span, timeit).
    get = attributes.get
    operation = get(_OPERATION)
    if type(operation) is not str or operation not in _PRICED_OPERATIONS:
        return None
    provider = get(_PROVIDER)
    request_model = get(_REQUEST_MODEL)
    response_model = get(_RESPONSE_MODEL)
    error = get(_ERROR_TYPE)
    if (
        type(provider) not in _TEXT
        or type(request_model) not in _TEXT
        or type(response_model) not in _TEXT
        or type(error) not in _TEXT
    ):
        return None
    if not provider:
        if get(_SYSTEM) is not None:
            return None  # the deprecated name: the full reader knows which one stands for what
        provider = None
    else:
        provider = _PROVIDER_RENAMED.get(provider, provider)
    counts = read_common_counts(attributes, max_tokens, scope)
    if counts is None:
        return None
    input_tokens, output_tokens, cache_read, cache_creation, reasoning, ttfc, missing = counts
    # In LLMCall's order (positional: with 15 keywords its constructor takes twice as long);
    # the test comparing this reader with the full one catches any slip.
    return (
        operation,
        provider,
        request_model or None,
        response_model or None,
        input_tokens,
        output_tokens,
        cache_read,
        cache_creation,
        reasoning,
        error or None,
        get(_STREAM) is True or ttfc is not None,
        ttfc,
        None,  # provider_cost
        missing,
        False,  # usage_rejected
    )


CommonCounts = tuple[int | None, int | None, int | None, int | None, int | None, float | None, bool]
"""Input, output, cache read, cache creation and reasoning tokens (as ``LLMCall``'s), the time
to first chunk, whether the usage is said to be missing."""


def read_common_counts(
    attributes: Mapping[str, Any], max_tokens: int, scope: str | None
) -> CommonCounts | None:
    """What ``read_common`` reads besides the operation, provider, models and error: the counts
    and the checks that do not depend on those values (no dialect by scope or marker, no
    deprecated count name, no provider's cost), or None. The processor's one pass calls it
    alone when those values are the ones of a call it priced before (they were checked then)."""
    if scope in BY_SCOPE or not _NOT_COMMON.isdisjoint(attributes):  # None is in no dict
        # A dialect, a dialect's marker, a deprecated count name, another library's cost.
        return None
    get = attributes.get
    # A provider's own cost is the full reader's to check; our estimate is not read.
    if get(_COST_AMOUNT) is not None and get(_COST_SOURCE) == _SOURCE_PROVIDER:
        return None
    input_tokens = get(_INPUT)
    output_tokens = get(_OUTPUT)
    cache_read = get(_CACHE_READ)
    cache_creation = get(_CACHE_CREATION)
    reasoning = get(_REASONING)
    # A wrong type or a bad count is the full reader's to report (a bool is not an int here).
    if (
        type(input_tokens) not in _COUNT
        or type(output_tokens) not in _COUNT
        or type(cache_read) not in _COUNT
        or type(cache_creation) not in _COUNT
        or type(reasoning) not in _COUNT
    ):
        return None
    # One test for the common case (~40 ns less, on every call): the OR of non-negative ints is
    # at least the largest of them, and negative when any of them is.
    if not (
        0
        <= (
            (input_tokens or 0)
            | (output_tokens or 0)
            | (cache_read or 0)
            | (cache_creation or 0)
            | (reasoning or 0)
        )
        <= max_tokens
    ) and (
        not 0 <= (input_tokens or 0) <= max_tokens
        or not 0 <= (output_tokens or 0) <= max_tokens
        or (cache_read is not None and not 0 <= cache_read <= max_tokens)
        or (cache_creation is not None and not 0 <= cache_creation <= max_tokens)
        or (reasoning is not None and not 0 <= reasoning <= max_tokens)
    ):
        return None
    # As the full reader does for the conventions' names (cache inside input, reasoning inside
    # output): parts larger than the whole were not counted in it. A sum past max_tokens is
    # the full reader's to reject.
    cached = (cache_read or 0) + (cache_creation or 0)
    if input_tokens is not None and cached > input_tokens:
        input_tokens += cached
    if output_tokens is not None and reasoning is not None and reasoning > output_tokens:
        output_tokens += reasoning
    ttfc = get(_TTFC)
    if (
        (input_tokens or 0) > max_tokens
        or (output_tokens or 0) > max_tokens
        # NaN fails both comparisons, infinity the second; an int is the full reader's.
        or (ttfc is not None and (type(ttfc) is not float or not 0.0 <= ttfc <= _FLOAT_MAX))
    ):
        return None
    return (
        input_tokens,
        output_tokens,
        cache_read,
        cache_creation,
        reasoning,
        ttfc,
        get(_USAGE_MISSING) is True,
    )


_FLOAT_MAX = sys.float_info.max

_COUNT_NAMES = (
    CANONICAL.input_names,
    CANONICAL.output_names,
    CANONICAL.cache_read_names,
    CANONICAL.cache_creation_names,
    CANONICAL.reasoning_names,
)
"""Each token count's names: the current one first, then its deprecated aliases."""
_INPUT, _OUTPUT, _CACHE_READ, _CACHE_CREATION, _REASONING = (names[0] for names in _COUNT_NAMES)
_COUNT_ALIASES = frozenset(alias for names in _COUNT_NAMES for alias in names[1:])
"""The deprecated names of the token counts: a span with any of them is the full reader's."""
_NOT_COMMON = _COUNT_ALIASES | {*_DETECT_MARKER_NAMES, sc.USAGE_COST}
"""Attributes a span in the common form does not carry: the count aliases, another library's
dialect marker, and OpenLLMetry's cost (any value, even one the full reader would ignore)."""
_TEXT = frozenset({str, type(None)})
_COUNT = frozenset({int, type(None)})
_OPERATION = sc.GEN_AI_OPERATION_NAME
_PRICED_OPERATIONS = sc.PRICED_OPERATIONS
_PROVIDER = sc.GEN_AI_PROVIDER_NAME
_PROVIDER_RENAMED = sc.PROVIDER_RENAMED
_SYSTEM = sc.GEN_AI_SYSTEM
_REQUEST_MODEL = sc.GEN_AI_REQUEST_MODEL
_RESPONSE_MODEL = sc.GEN_AI_RESPONSE_MODEL
_ERROR_TYPE = sc.ERROR_TYPE
_COST_AMOUNT = sc.GEN_AI_USAGE_COST_AMOUNT
_COST_SOURCE = sc.GEN_AI_USAGE_COST_SOURCE
_SOURCE_PROVIDER = sc.COST_SOURCE_PROVIDER
_TTFC = sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
_STREAM = sc.GEN_AI_REQUEST_STREAM
_USAGE_MISSING = sc.OTEL_LLM_USAGE_MISSING


def read_call_full(
    attributes: Mapping[str, Any], *, max_tokens: int, scope: str | None = None
) -> tuple[LLMCall | None, list[Rejected]]:
    """``read_call`` for any span: dialects, aliases, and every value checked and reported."""
    operation = attributes.get(sc.GEN_AI_OPERATION_NAME)
    dialect: Dialect
    if operation is None:
        found = operation_of(attributes, scope)
        if found is None:
            return None, []
        operation, dialect = found
    elif isinstance(operation, str) and operation in sc.PRICED_OPERATIONS:
        dialect = dialect_of(attributes, scope)
    else:
        return None, []
    rejected: list[Rejected] = []
    reader = _Reader(attributes, rejected, max_tokens)

    provider = reader.first_text(dialect.provider_names)
    if provider is not None:
        provider = dialect.provider_values.get(provider, provider)
        provider = sc.PROVIDER_RENAMED.get(provider, provider)

    first_usage_rejection = len(rejected)
    input_tokens = reader.tokens(dialect.input_names)
    output_tokens = reader.tokens(dialect.output_names)
    cache_read = reader.tokens(dialect.cache_read_names)
    cache_creation = reader.tokens(dialect.cache_creation_names)
    reasoning = reader.tokens(dialect.reasoning_names)

    # The conventions count cached input inside input_tokens and reasoning inside output_tokens,
    # but some instrumentations report the provider's raw, exclusive numbers (Anthropic's
    # input_tokens excludes the cache; Gemini's candidates exclude thoughts). A known dialect
    # says which (semconv/dialects.yaml); otherwise, when the parts exceed the whole, the whole
    # cannot have included them: add them, never price them twice.
    cached = (cache_read or 0) + (cache_creation or 0)
    if input_tokens is not None and (
        cached > input_tokens or (cached and not dialect.includes_cache(provider))
    ):
        input_tokens += cached
    if output_tokens is not None and reasoning is not None and reasoning > output_tokens:
        output_tokens += reasoning
    # Each part is within max_tokens, but their sum need not be: the total is then as absurd.
    if input_tokens is not None and input_tokens > max_tokens:
        rejected.append(Rejected(sc.GEN_AI_USAGE_INPUT_TOKENS, "absurd"))
        input_tokens = None
    if output_tokens is not None and output_tokens > max_tokens:
        rejected.append(Rejected(sc.GEN_AI_USAGE_OUTPUT_TOKENS, "absurd"))
        output_tokens = None
    # Only token counts: a bad provider-reported cost falls back to local pricing instead.
    usage_rejected = len(rejected) > first_usage_rejection

    ttfc = reader.seconds(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
    stream = attributes.get(sc.GEN_AI_REQUEST_STREAM)
    call = LLMCall(
        operation=operation,
        provider=provider,
        request_model=reader.first_text(dialect.request_model_names),
        response_model=reader.first_text(dialect.response_model_names),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
        reasoning_tokens=reasoning,
        error_type=reader.text(sc.ERROR_TYPE),
        streaming=stream is True or ttfc is not None,
        time_to_first_chunk=ttfc,
        provider_cost=reader.provider_cost(),
        usage_missing=attributes.get(sc.OTEL_LLM_USAGE_MISSING) is True,
        usage_rejected=usage_rejected,
        dialect=dialect.id,
        instrumentation_cost=(
            reader.cost(dialect.instrumentation_cost)
            if dialect.instrumentation_cost is not None
            else None
        ),
    )
    return call, rejected


class _Reader:
    __slots__ = ("_attributes", "_max_tokens", "_rejected")

    def __init__(self, attributes: Mapping[str, Any], rejected: list[Rejected], max_tokens: int):
        self._attributes = attributes
        self._rejected = rejected
        self._max_tokens = max_tokens

    def text(self, name: str) -> str | None:
        value = self._attributes.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self._rejected.append(Rejected(name, "wrong_type"))
            return None
        return value

    def first_text(self, names: tuple[str, ...]) -> str | None:
        for name in names:
            value = self.text(name)
            if value is not None:
                return value
        return None

    def tokens(self, names: tuple[str, ...]) -> int | None:
        """The first of ``names`` present (canonical, deprecated, then a dialect's), checked."""
        name = names[0]
        value = self._attributes.get(name)
        if value is None:
            for name in names[1:]:  # the name found is the one reported
                value = self._attributes.get(name)
                if value is not None:
                    break
        if type(value) is int and 0 <= value <= self._max_tokens:
            return value  # the common case, without the general checks
        if value is None:
            return None
        reason = _token_problem(value, self._max_tokens)
        if reason is not None:
            self._rejected.append(Rejected(name, reason))
            return None
        return int(value)

    def seconds(self, name: str) -> float | None:
        value = self._attributes.get(name)
        if value is None:
            return None
        reason = _number_problem(value)
        if reason is None and value > sys.float_info.max:
            reason = "absurd"  # an int too large for a float
        if reason is not None:
            self._rejected.append(Rejected(name, reason))
            return None
        return float(value)

    def provider_cost(self) -> Decimal | None:
        name = sc.GEN_AI_USAGE_COST_AMOUNT
        value = self._attributes.get(name)
        if value is None or self._attributes.get(sc.GEN_AI_USAGE_COST_SOURCE) != (
            sc.COST_SOURCE_PROVIDER
        ):
            name, value = sc.USAGE_COST, self._attributes.get(sc.USAGE_COST)
        if value is None:
            return None
        reason = _number_problem(value)
        if reason is None and value > _MAX_PROVIDER_COST_USD:
            reason = "absurd"
        currency = self._attributes.get(sc.GEN_AI_USAGE_COST_CURRENCY)
        if reason is None and currency is not None and currency != sc.CURRENCY_USD:
            # No exchange rates here: a cost in another currency cannot be added to USD.
            name, reason = sc.GEN_AI_USAGE_COST_CURRENCY, "unsupported_currency"
        if reason is not None:
            self._rejected.append(Rejected(name, reason))
            return None
        # str() of a float is its shortest round-trip form: 0.0016150000000000001 stays out.
        return Decimal(str(value))

    def cost(self, name: str) -> Decimal | None:
        """A cost in USD an instrumentation computed itself; checked like a provider's."""
        value = self._attributes.get(name)
        if value is None:
            return None
        reason = _number_problem(value)
        if reason is None and value > _MAX_PROVIDER_COST_USD:
            reason = "absurd"
        if reason is not None:
            self._rejected.append(Rejected(name, reason))
            return None
        return Decimal(str(value))


def _number_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "wrong_type"
    if isinstance(value, float) and not math.isfinite(value):
        return "not_finite"
    if value < 0:
        return "negative"
    return None


def _token_problem(value: Any, max_tokens: int) -> str | None:
    reason = _number_problem(value)
    if reason is not None:
        return reason
    if isinstance(value, float) and not value.is_integer():
        return "not_integer"
    if value > max_tokens:
        return "absurd"
    return None
