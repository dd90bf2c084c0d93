"""The cost of one call in USD: exact, and cheap to build on the hot path.

A call priced from flat per-token prices is computed in whole units of a fixed fraction of a
dollar (``Rates.units``); its Decimals are made only when someone reads them. Turning a Decimal
into a float for a span attribute costs ~0.2 µs a value, so the float comes straight from the
integer instead: ``units / divisor`` is a correctly rounded int division, the same float that
``float(Decimal)`` gives.
"""

from __future__ import annotations

from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
)
from typing import Any

# The units are below 10**28 (Rates bounds them), so these divisions are exact; Inexact is
# trapped so that a unit count that somehow was not could never round silently.
_EXACT = Context(prec=60, traps=[InvalidOperation, Inexact])

_new = object.__new__
_NANOS_PER_USD = 1_000_000_000

_FIELDS = (
    "amount",
    "source",
    "price_data",
    "provider_id",
    "model_id",
    "input",
    "cache_read",
    "cache_write",
    "output",
    "request",
)


class Cost:
    """The cost of one call in USD, exact until it is emitted.

    Read-only. ``amount`` and the five parts are Decimals (the parts None for a cost reported by
    the provider); ``amount_float`` and ``floats()`` give them as floats without a Decimal.
    Two costs are equal when every field is (Decimals by value).
    """

    __slots__ = ("_data",)

    _data: tuple[Any, ...]
    """(amount, input, cache_read, cache_write, output, request, divisor, source, price_data,
    provider_id, model_id): with a divisor, the six money values are int units of 1/divisor
    USD; without (None), they are Decimals (or None)."""

    def __init__(  # noqa: PLR0917 - positional, as when Cost was a NamedTuple
        self,
        amount: Decimal,
        source: str,
        price_data: str,
        provider_id: str | None = None,
        model_id: str | None = None,
        input: Decimal | None = None,
        cache_read: Decimal | None = None,
        cache_write: Decimal | None = None,
        output: Decimal | None = None,
        request: Decimal | None = None,
    ) -> None:
        self._data = (
            amount,
            input,
            cache_read,
            cache_write,
            output,
            request,
            None,
            source,
            price_data,
            provider_id,
            model_id,
        )

    @classmethod
    def of_units(  # noqa: PLR0917 - the hot path: positional is cheaper
        cls,
        units: tuple[int, int, int, int, int, int],
        divisor: int,
        source: str,
        price_data: str,
        provider_id: str | None,
        model_id: str | None,
    ) -> Cost:
        """A cost of (amount, input, cache_read, cache_write, output, request) int units of
        ``1/divisor`` USD, ``divisor`` a power of ten."""
        return cls.join((*units, divisor), (source, price_data, provider_id, model_id))

    @classmethod
    def join(
        cls,
        units: tuple[int, int, int, int, int, int, int],
        identity: tuple[str, str, str | None, str | None],
    ) -> Cost:
        """The hot path's ``of_units``: ``units`` as ``Rates.units`` gives them (the divisor
        last), ``identity`` (source, price_data, provider_id, model_id) made once per entry."""
        cost = _new(cls)
        cost._data = units + identity
        return cost

    def _decimal(self, index: int) -> Decimal | None:
        data = self._data
        value = data[index]
        divisor = data[6]
        if divisor is None or value is None:
            return value  # type: ignore[no-any-return]
        return _EXACT.divide(value, divisor)

    def _float(self, index: int) -> float | None:
        data = self._data
        value = data[index]
        divisor = data[6]
        if value is None:
            return None
        if divisor is None:
            return float(value)
        return value / divisor  # type: ignore[no-any-return]

    def nanos(self) -> int:
        """The amount in whole nano-USD (``to_nanos(amount)``), from the integer units without
        a Decimal when they are whole nano-USD (the policies add it up on the hot path)."""
        data = self._data
        divisor = data[6]
        if divisor is not None:
            if _NANOS_PER_USD % divisor == 0:
                return data[0] * (_NANOS_PER_USD // divisor)  # type: ignore[no-any-return]
            if divisor % _NANOS_PER_USD == 0:
                units, rest = divmod(data[0], divisor // _NANOS_PER_USD)
                if not rest:
                    return units  # type: ignore[no-any-return]
        return to_nanos(self.amount)

    @property
    def amount(self) -> Decimal:
        amount = self._decimal(0)
        assert amount is not None
        return amount

    @property
    def input(self) -> Decimal | None:
        """Uncached input tokens."""
        return self._decimal(1)

    @property
    def cache_read(self) -> Decimal | None:
        return self._decimal(2)

    @property
    def cache_write(self) -> Decimal | None:
        return self._decimal(3)

    @property
    def output(self) -> Decimal | None:
        """Output tokens, reasoning included."""
        return self._decimal(4)

    @property
    def request(self) -> Decimal | None:
        return self._decimal(5)

    @property
    def source(self) -> str:
        """``local`` (from price data) or ``provider`` (reported by the API)."""
        return self._data[7]  # type: ignore[no-any-return]

    @property
    def price_data(self) -> str:
        """Identity of the prices used, e.g. ``genai-prices 0.2.3``."""
        return self._data[8]  # type: ignore[no-any-return]

    @property
    def provider_id(self) -> str | None:
        return self._data[9]  # type: ignore[no-any-return]

    @property
    def model_id(self) -> str | None:
        return self._data[10]  # type: ignore[no-any-return]

    @property
    def units(self) -> tuple[tuple[int, int, int, int, int, int], int] | None:
        """((amount, input, cache_read, cache_write, output, request) in int units, the power of
        ten that divides them into USD) for a cost from flat prices; None for one made from
        Decimals."""
        data = self._data
        divisor = data[6]
        return None if divisor is None else (data[:6], divisor)

    @property
    def identity(self) -> tuple[str, str, str | None, str | None]:
        """(source, price_data, provider_id, model_id) in one read."""
        return self._data[7:]

    @property
    def amount_float(self) -> float:
        """``float(amount)``, without making the Decimal."""
        data = self._data
        divisor = data[6]
        return data[0] / divisor if divisor is not None else float(data[0])

    def floats(
        self,
    ) -> tuple[float, float | None, float | None, float | None, float | None, float | None]:
        """(amount, input, cache_read, cache_write, output, request) as floats, each equal to
        ``float()`` of the Decimal field."""
        data = self._data
        divisor = data[6]
        if divisor is not None:
            return (
                data[0] / divisor,
                data[1] / divisor,
                data[2] / divisor,
                data[3] / divisor,
                data[4] / divisor,
                data[5] / divisor,
            )
        return (
            float(data[0]),
            self._float(1),
            self._float(2),
            self._float(3),
            self._float(4),
            self._float(5),
        )

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cost):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"Cost({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles (multiprocessing, caches) as the Decimal form every version can read.
        return (Cost, self._fields())


def to_nanos(amount: Decimal) -> int:
    """USD as whole nano-USD, rounded half to even."""
    scaled = amount.scaleb(9)
    nanos = int(scaled)
    if nanos != scaled:  # a sub-nano fraction (build_record has rounded its own already)
        nanos = int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return nanos


def nanos_bound(amount: Decimal, rounding: str) -> int:
    """USD as whole nano-USD rounded ``ROUND_FLOOR`` or ``ROUND_CEILING``, exactly whatever the
    amount's digits: a query's bound (from 0 to 1e9 USD; checked by its parser). Divided in the
    default 28-digit context, a bound of 36 digits was rounded to the next nano-USD and
    1e-99999999999999999 underflowed to 0 (found in review)."""
    if not amount:
        return 0
    if amount.adjusted() < -10:  # within a tenth of a nano-USD of 0: its exponent is unbounded
        return (1 if amount > 0 else 0) if rounding == ROUND_CEILING else (0 if amount > 0 else -1)
    numerator, denominator = amount.as_integer_ratio()
    scaled = numerator * 10**9
    return scaled // denominator if rounding == ROUND_FLOOR else -(-scaled // denominator)


def from_nanos(nanos: int) -> Decimal:
    """Whole nano-USD as USD (exact; 9 decimal places, or plain 0)."""
    return Decimal(nanos).scaleb(-9) if nanos else Decimal(0)
