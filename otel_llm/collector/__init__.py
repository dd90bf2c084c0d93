"""The collector service: OTLP in, GenAI spans priced and measured, OTLP out.

``CollectorService`` is imported on first use: ``otel-llm --version`` (which imports this
package for its subcommand) must not pay for grpcio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_llm._lazy import lazy_attributes

if TYPE_CHECKING:
    from otel_llm.collector.service import CollectorService

__all__ = ["CollectorService"]

__getattr__ = lazy_attributes(__name__, {"CollectorService": "otel_llm.collector.service"})
