"""Messages in the GenAI conventions' shape, as plain dicts, for content capture.

``{"role": ..., "parts": [...], "finish_reason": ...}``; see ``content.py`` for how they are
recorded.
"""

from __future__ import annotations

from typing import Any, Final

Message = dict[str, Any]
"""A message in the conventions' shape: ``role``, ``parts`` and, on output, ``finish_reason``."""
Part = dict[str, Any]
"""A message part: ``{"type": "text", "content": ...}``, ``tool_call``, ``tool_call_response``..."""

STRUCTURAL_PART_KEYS: Final = frozenset({"type", "id", "name", "mime_type", "modality"})
"""The fields of a part that describe it; every other field is content (redacted, truncated)."""
STRUCTURAL_MESSAGE_KEYS: Final = frozenset({"role", "finish_reason", "name", "id"})
"""The fields of a message besides ``parts`` that describe it."""


def text_part(text: str) -> Part:
    """A text part."""
    return {"type": "text", "content": text}


def tool_call_part(call_id: str | None, name: str, arguments: Any) -> Part:
    """A tool call the model requested; ``arguments`` as the provider gave them (text or dict)."""
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def tool_call_response_part(call_id: str | None, response: Any) -> Part:
    """The result of a tool call, sent back to the model."""
    return {"type": "tool_call_response", "id": call_id, "response": response}


def message(role: str, parts: list[Part], finish_reason: str | None = None) -> Message:
    """A message of any parts; ``finish_reason`` only for output messages."""
    result: Message = {"role": role, "parts": parts}
    if finish_reason is not None:
        result["finish_reason"] = finish_reason
    return result


def text_message(role: str, text: str, finish_reason: str | None = None) -> Message:
    """A message with a single text part; ``finish_reason`` only for output messages."""
    return message(role, [text_part(text)], finish_reason)
