"""Reading and amending OTLP protobuf spans with the values the SDK would hold.

The shared core (``otel_llm.derive``) reads attributes as the Python SDK stores them: scalars,
and arrays of scalars as tuples. OTLP carries them as ``AnyValue`` messages; this module turns
them into those values, and writes the cost attributes back the way ``Derived.priced_attributes``
changes an SDK span's attributes, so a span priced here and one priced in-process look the same
on the wire.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_llm import _semconv as sc

# Removed from a span whose call could not be priced: a cost that came with the span and was
# not trusted must not travel on as if otel-llm had vouched for it (Derived.priced_attributes).
UNTRUSTED_WHEN_UNPRICED = (
    sc.GEN_AI_USAGE_COST_AMOUNT,
    sc.GEN_AI_USAGE_COST_CURRENCY,
    sc.GEN_AI_USAGE_COST_SOURCE,
)


def value_of(value: AnyValue) -> Any:
    """An ``AnyValue`` as the SDK would hold it: arrays as tuples, kvlists as dicts, an empty
    value as None."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(value_of(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_of(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """A repeated ``KeyValue`` field as a dict; of a repeated key, the last wins (as in the SDK,
    where setting an attribute again replaces it)."""
    return {pair.key: value_of(pair.value) for pair in pairs}


def set_value(target: AnyValue, value: Any) -> None:
    """Write a Python attribute value (scalar or sequence of scalars) into ``target``."""
    # bool before int: bool is an int subclass, and OTLP keeps them apart.
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list | tuple):
        array = target.array_value
        del array.values[:]
        for item in value:
            set_value(array.values.add(), item)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as an OTLP attribute value")


def apply_attributes(
    span: Span,
    added: Mapping[str, Any],
    *,
    remove: Iterable[str] = (),
    present: Collection[str] | None = None,
) -> None:
    """Give ``span`` the ``added`` attributes (replacing a key it already has, never adding it
    twice) after dropping ``remove``; the other attributes keep their order and encoding.

    ``present``: the span's attribute keys, when the caller has them already. Every value is
    checked before the span is touched: one that cannot be encoded (TypeError) leaves the span
    as it was.
    """
    removing = set(remove) - added.keys() if remove else set()
    if present is not None and removing.isdisjoint(present) and added.keys().isdisjoint(present):
        # Nothing to replace or remove: append the attributes' wire encoding in one C call,
        # a fraction of the cost of building the messages field by field from Python. Every
        # value is encoded (a TypeError raised) before the span is touched.
        span.MergeFromString(_encoded_attributes(added))
        return
    for value in added.values():
        _check_encodable(value)
    pairs = span.attributes
    index: dict[str, int] = {}
    for position, pair in enumerate(pairs):
        index.setdefault(pair.key, position)
    if removing & index.keys():
        # Rebuilt from copies: deleting from a repeated field while holding its items is unsafe.
        kept = [
            KeyValue(key=pair.key, value=pair.value) for pair in pairs if pair.key not in removing
        ]
        del pairs[:]
        pairs.extend(kept)
        index = {}
        for position, pair in enumerate(pairs):
            index.setdefault(pair.key, position)
    for key, value in added.items():
        found = index.get(key)
        if found is None:
            pair = pairs.add(key=key)
        else:
            pair = pairs[found]
            pair.value.Clear()
        set_value(pair.value, value)


# Protobuf wire encoding of ``Span.attributes`` entries (field 9 of Span; KeyValue: key = 1,
# value = 2; AnyValue: string_value = 1, bool_value = 2, int_value = 3, double_value = 4,
# bytes_value = 7). Arrays take the general path.
_SPAN_ATTRIBUTE_TAG = b"\x4a"
_KEY_TAG = b"\x0a"
_VALUE_TAG = b"\x12"
_DOUBLE = struct.Struct("<d")


def _varint(number: int) -> bytes:
    number &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _delimited(tag: bytes, data: bytes) -> bytes:
    return tag + _varint(len(data)) + data


def _encoded_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _delimited(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _delimited(b"\x3a", value)
    holder = AnyValue()
    set_value(holder, value)
    return holder.SerializeToString()


_SCALARS = (str, bool, int, float, bytes)  # a tuple: isinstance of a union is slower
_encoded_cache: dict[tuple[str, Any], bytes] = {}
_double_prefixes: dict[str, bytes] = {}
_MAX_CACHED = 4096


def _encoded_attributes(added: Mapping[str, Any]) -> bytes:
    """``added`` as ``Span.attributes`` entries on the wire, in one piece. What
    ``_encoded_attribute`` keeps is looked up inline here: the call per attribute was a third
    of the cost of pricing a span's attributes back onto it."""
    parts = []
    prefixes, cache, pack = _double_prefixes, _encoded_cache, _DOUBLE.pack
    for key, value in added.items():
        kind = type(value)
        if kind is float:
            prefix = prefixes.get(key)
            if prefix is not None:
                parts.append(prefix + pack(value))
                continue
        elif kind is str:
            encoded = cache.get((key, value))
            if encoded is not None:
                parts.append(encoded)
                continue
        parts.append(_encoded_attribute(key, value))
    return b"".join(parts)


def _encoded_attribute(key: str, value: Any) -> bytes:
    """One ``Span.attributes`` entry on the wire. The cost attributes repeat (the same keys,
    often the same text values): their encodings are kept, and a float's is a fixed prefix
    per key plus the eight bytes of the number."""
    if type(value) is float:
        prefix = _double_prefixes.get(key)
        if prefix is None:
            whole = _encode_attribute(key, value)
            prefix = _double_prefixes[key] = whole[:-8]
            if len(_double_prefixes) > _MAX_CACHED:
                _double_prefixes.clear()
        return prefix + _DOUBLE.pack(value)
    if type(value) is not str:
        return _encode_attribute(key, value)
    cache_key = (key, value)
    encoded = _encoded_cache.get(cache_key)
    if encoded is None:
        if len(_encoded_cache) >= _MAX_CACHED:
            _encoded_cache.clear()  # a flood of distinct values must not grow it
        encoded = _encoded_cache[cache_key] = _encode_attribute(key, value)
    return encoded


def _encode_attribute(key: str, value: Any) -> bytes:
    pair = _delimited(_KEY_TAG, key.encode()) + _delimited(_VALUE_TAG, _encoded_value(value))
    return _delimited(_SPAN_ATTRIBUTE_TAG, pair)


def _check_encodable(value: Any) -> None:
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_encodable(item)
        return
    raise TypeError(f"cannot encode {type(value).__name__} as an OTLP attribute value")


def id_to_int(raw: bytes) -> int:
    """A trace or span id's bytes as the integer the SDK uses (0 when absent)."""
    return int.from_bytes(raw, "big") if raw else 0
