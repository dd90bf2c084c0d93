"""The collector service: OTLP in, GenAI spans priced and measured, OTLP out.

``CollectorService`` is imported on first use: ``otel-llm --version`` (which imports this
package for its subcommand) must not pay for grpcio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_llm.collector.service import CollectorService

__all__ = ["CollectorService"]


def __getattr__(name: str) -> Any:
    if name == "CollectorService":
        from otel_llm.collector.service import CollectorService  # noqa: PLC0415

        return CollectorService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
