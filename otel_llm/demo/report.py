"""The demo's summary as text: cost and tokens by model, the unpriced calls, cost by feature."""

from __future__ import annotations

from otel_llm.calllog.tables import table
from otel_llm.demo.pipeline import FEATURE_LABEL
from otel_llm.demo.summary import Row, Summary

_HEADERS = (
    "provider", "model", "calls", "errors", "unpriced",
    "input", "output", "cache read", "cache write", "cost (USD)",
)  # fmt: skip
_NUMBERS = range(2, len(_HEADERS))
"""Right-aligned: all but provider and model."""


def format_text(summary: Summary) -> str:
    body = [_text_row(row.provider, row.model, row) for row in summary.rows]
    rows = [*body, None, _text_row("total", "", summary.total)]
    lines = [
        f"otel-llm demo: {summary.calls} simulated LLM calls (seed {summary.seed}; "
        f"no network, no API key), priced with {summary.price_data}",
        "",
        table(_HEADERS, rows, right=_NUMBERS, header_rule=False),
    ]
    if summary.unpriced:
        lines += [
            "",
            "Unpriced calls (cost unknown: counted in "
            "gen_ai_client_unpriced_operations_total, not as $0):",
        ]
        groups = [
            (
                group.provider,
                group.model,
                group.reason,
                f"{group.calls} call{'s' if group.calls != 1 else ''}",
                f"failed: {group.error_type}" if group.error_type else "",
            )
            for group in summary.unpriced
        ]
        lines.append(_indented(table(None, groups, right=())))
    if summary.features:
        lines += ["", f"Cost by feature (llm_context feature -> the '{FEATURE_LABEL}' label):"]
        features = [
            (
                name or "(none)",
                f"{row.calls} calls",
                _usd(row, "$"),
                f"({row.unpriced} unpriced)" if row.unpriced else "",
            )
            for name, row in summary.features.items()
        ]
        lines.append(_indented(table(None, features, right=())))
    return "\n".join(lines) + "\n"


def _text_row(provider: str, model: str, row: Row) -> tuple[str, ...]:
    tokens = row.tokens
    return (
        provider,
        model,
        str(row.calls),
        str(row.errors),
        str(row.unpriced),
        f"{tokens['input']:,}",
        f"{tokens['output']:,}",
        f"{tokens['cache_read']:,}",
        f"{tokens['cache_creation']:,}",
        _usd(row),
    )


def _usd(row: Row, sign: str = "") -> str:
    """Rounded to a millionth of a dollar; ``unpriced`` when no call of the row has a price."""
    if row.cost_usd is None:
        return "unpriced"
    return f"{sign}{row.cost:.6f}"


def _indented(text: str) -> str:
    return "\n".join("  " + line for line in text.split("\n"))
