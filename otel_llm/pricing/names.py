"""Model-name normalisation: the spellings a call may use for a model the price data knows.

genai-prices already matches many dated snapshots (``gpt-4o-mini-2024-07-18``) and Bedrock
region prefixes itself; these rules cover what it leaves: ARNs, Vertex ``@`` versions, Bedrock
``-v1:0`` suffixes, and gateway prefixes (``openai/gpt-4o``).
"""

from __future__ import annotations

import re

_DATE_SUFFIX = re.compile(r"[-@](?:20\d{2}-?\d{2}-?\d{2})$")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$|:\d+$")
_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|ap|ca|jp|au|global|us-gov)\.")


def candidates(model: str) -> list[str]:
    """Names to try, the given one first, each later one a little more general."""
    names = [model]

    def add(name: str) -> None:
        if name and name not in names:
            names.append(name)

    name = model.strip().lower()
    if name.startswith("arn:"):
        # arn:aws:bedrock:<region>:<account>:inference-profile/us.anthropic.claude-...
        name = name.rsplit("/", 1)[-1]
    add(name)
    name = name.replace("@", "-")
    add(name)
    for pattern in (_BEDROCK_VERSION, _REGION_PREFIX, _DATE_SUFFIX):
        name = pattern.sub("", name)
        add(name)
    return names


def split_router_prefix(model: str) -> tuple[str, str] | None:
    """``("openai", "gpt-4o")`` for ``openai/gpt-4o``; None when there is no single prefix."""
    if model.startswith("arn:"):
        return None
    vendor, sep, rest = model.partition("/")
    if not sep or not vendor or not rest:
        return None
    return vendor.lower(), rest
