"""Where each span of an OTLP ``ExportTraceServiceRequest`` lies in its protobuf encoding, and the
request written again with some spans replaced, the rest copied as they came.

Most spans of a mixed request are no LLM call and leave the collector unchanged. Reading them
into Python objects (one per span) and serializing the whole request again was most of the
collector's cost per span. Here only the three levels above the spans are walked (request ->
``ResourceSpans`` -> ``ScopeSpans`` -> span: a tag and a length per span, never its fields), and
``splice`` copies every unchanged byte range as one slice.

The walk trusts nothing: anything it does not expect (a length past its end, a wire type protobuf
does not use there, a resource or scope given twice, which protobuf would merge) makes ``layout``
return None, and the caller takes the full path (parse everything, serialize again). The request
has been parsed once by then (the receivers refuse what does not decode), so the walk is never
the judge of what is malformed.

Field numbers (opentelemetry-proto): ExportTraceServiceRequest.resource_spans = 1;
ResourceSpans.resource = 1, scope_spans = 2, schema_url = 3; ScopeSpans.scope = 1, spans = 2,
schema_url = 3.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Layout", "layout", "splice"]

_LEN = 2
_RESOURCE_SPANS = 1
_RESOURCE = 1
_SCOPE_SPANS = 2
_SCOPE = 1
_SPANS = 2


class _Unexpected(Exception):
    """The walk met something it does not handle: the caller takes the full path."""


@dataclass(slots=True)
class Layout:
    """The spans of one request, in wire order (the order of the parsed request's spans).

    ``starts[i]:ends[i]`` is span ``i``'s encoding (without its tag and length), ``heads[i]``
    where its tag is; ``scope_of[i]`` the index of its ``ScopeSpans`` in ``scopes``, each
    ``(resource index, tag, start, end)`` of that message; ``resources`` each
    ``ResourceSpans``' ``(tag, start, end)``.
    """

    heads: list[int]
    starts: list[int]
    ends: list[int]
    scope_of: list[int]
    scopes: list[tuple[int, int, int, int]]
    resources: list[tuple[int, int, int]]

    def spans_at(self, positions: Iterable[int]) -> list[int]:
        """The indexes of the spans whose encoding holds each byte offset (each once, in wire
        order); an offset outside every span (a resource's or scope's attributes) is none."""
        starts, ends = self.starts, self.ends
        found = set()
        for position in positions:
            index = bisect_right(starts, position) - 1
            if index >= 0 and position < ends[index]:
                found.add(index)
        return sorted(found)

    def scope_counts(self) -> list[int]:
        """Spans per ``ScopeSpans``, in order."""
        counts = [0] * len(self.scopes)
        for scope_index in self.scope_of:
            counts[scope_index] += 1
        return counts


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = data[pos]  # IndexError past the end: caught by layout()
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise _Unexpected("varint too long")


def _fields(data: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """The length-delimited fields of the message in ``data[pos:end]``: (field number, where
    its tag is, where its value starts, where it ends); other fields are checked and skipped."""
    fields = []
    while pos < end:
        head = pos
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos)
        wire = tag & 7
        if wire == _LEN:
            length = data[pos]
            if length < 0x80:
                pos += 1
            elif data[pos + 1] < 0x80:  # a span's length: most are 128 bytes to 16 kB
                length = (length & 0x7F) | data[pos + 1] << 7
                pos += 2
            else:
                length, pos = _varint(data, pos)
            stop = pos + length
            if stop > end:
                raise _Unexpected("length past the end of its message")
            fields.append((tag >> 3, head, pos, stop))
            pos = stop
        else:
            pos = _skip(data, pos, wire)
    if pos != end:
        raise _Unexpected("a field runs past the end of its message")
    return fields


def _skip(data: bytes, pos: int, wire: int) -> int:
    """Past the value (at ``pos``) of a field that is not length-delimited (none of the
    messages walked has one: an unknown field)."""
    if wire == 0:
        return _varint(data, pos)[1]
    if wire == 1:
        return pos + 8
    if wire == 5:
        return pos + 4
    raise _Unexpected(f"wire type {wire}")  # groups: legal, never used by OTLP


def layout(data: bytes) -> Layout | None:
    """The spans' places in ``data`` (a serialized ``ExportTraceServiceRequest``), or None when
    the walk meets anything unexpected (see the module's docstring)."""
    try:
        return _layout(data)
    except (_Unexpected, IndexError):
        return None


def _layout(data: bytes) -> Layout:
    where = Layout([], [], [], [], [], [])
    scope_of = where.scope_of
    for number, head, start, end in _fields(data, 0, len(data)):
        if number != _RESOURCE_SPANS:
            continue  # an unknown field: copied by splice, as the full path keeps it
        resource_index = len(where.resources)
        where.resources.append((head, start, end))
        seen_resource = False
        for field, scope_head, scope_start, scope_end in _fields(data, start, end):
            if field == _RESOURCE:
                if seen_resource:
                    raise _Unexpected("a resource given twice (protobuf merges them)")
                seen_resource = True
            elif field == _SCOPE_SPANS:
                scope_index = len(where.scopes)
                where.scopes.append((resource_index, scope_head, scope_start, scope_end))
                count = _spans(data, scope_start, scope_end, where)
                scope_of.extend([scope_index] * count)
    return where


def _spans(data: bytes, pos: int, end: int, where: Layout) -> int:
    """Appends the places of the spans of the ``ScopeSpans`` in ``data[pos:end]``; returns
    how many. The loop every span of a request goes through: a span's tag and a length of one
    or two bytes are read inline, anything else as ``_fields`` reads it."""
    heads, starts, ends = where.heads, where.starts, where.ends
    count = 0
    seen_scope = False
    while pos < end:
        if data[pos] == _SPANS_TAG:
            head = pos
            length = data[pos + 1]
            if length < 0x80:
                pos += 2
            elif data[pos + 2] < 0x80:
                length = (length & 0x7F) | data[pos + 2] << 7
                pos += 3
            else:
                length, pos = _varint(data, pos + 1)
            stop = pos + length
            if stop > end:
                raise _Unexpected("length past the end of its message")
            heads.append(head)
            starts.append(pos)
            ends.append(stop)
            count += 1
            pos = stop
            continue
        following = _next_field(data, pos, end)
        for number, _, _, _ in _fields(data, pos, following):
            if number == _SCOPE:
                if seen_scope:
                    raise _Unexpected("a scope given twice (protobuf merges them)")
                seen_scope = True
        pos = following
    return count


def _next_field(data: bytes, pos: int, end: int) -> int:
    """Where the field after the one whose tag is at ``pos`` begins."""
    tag, value = _varint(data, pos)
    if tag & 7 != _LEN:
        return _skip(data, value, tag & 7)
    length, value = _varint(data, value)
    if value + length > end:
        raise _Unexpected("length past the end of its message")
    return value + length


def _length_prefixed(tag: int, data: bytes) -> bytes:
    size = len(data)
    out = bytearray((tag,))
    while size > 0x7F:
        out.append((size & 0x7F) | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + data


def splice(data: bytes, where: Layout, replaced: Mapping[int, bytes]) -> bytes:
    """``data`` with span ``i``'s encoding replaced by ``replaced[i]``; every other byte as it
    came, the lengths of the messages around a replaced span written again."""
    if not replaced:
        return data
    by_scope: dict[int, list[int]] = {}
    for index in sorted(replaced):
        by_scope.setdefault(where.scope_of[index], []).append(index)
    by_resource: dict[int, list[int]] = {}
    for scope_index in sorted(by_scope):
        by_resource.setdefault(where.scopes[scope_index][0], []).append(scope_index)
    out: list[bytes] = []
    pos = 0
    for resource_index in sorted(by_resource):
        head, start, end = where.resources[resource_index]
        out.append(data[pos:head])
        inner: list[bytes] = []
        inner_pos = start
        for scope_index in by_resource[resource_index]:
            _, scope_head, scope_start, scope_end = where.scopes[scope_index]
            inner.append(data[inner_pos:scope_head])
            spans: list[bytes] = []
            span_pos = scope_start
            for index in by_scope[scope_index]:
                spans.append(data[span_pos : where.heads[index]])
                spans.append(_length_prefixed(_SPANS_TAG, replaced[index]))
                span_pos = where.ends[index]
            spans.append(data[span_pos:scope_end])
            inner.append(_length_prefixed(_SCOPE_SPANS_TAG, b"".join(spans)))
            inner_pos = scope_end
        inner.append(data[inner_pos:end])
        out.append(_length_prefixed(_RESOURCE_SPANS_TAG, b"".join(inner)))
        pos = end
    out.append(data[pos:])
    return b"".join(out)


# The tags written for the messages around a replaced span (field number << 3 | wire type 2).
_RESOURCE_SPANS_TAG = _RESOURCE_SPANS << 3 | _LEN
_SCOPE_SPANS_TAG = _SCOPE_SPANS << 3 | _LEN
_SPANS_TAG = _SPANS << 3 | _LEN
