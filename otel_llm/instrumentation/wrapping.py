"""Wrapping the SDKs' methods, unwrapping them, and stepping aside for another instrumentation."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

_logger = logging.getLogger(__name__)

Target = tuple[str, str, str, Callable[..., Any]]
"""(module, class, method, wrapper): a method to wrap, if this SDK version has it."""

Wrapped = list[tuple[type, str]]
"""The (class, method) pairs ``wrap_methods`` wrapped."""


def wrap_methods(targets: Iterable[Target]) -> Wrapped:
    """Wrap each target the installed SDK version has (older ones lack some APIs); returns what
    was wrapped, for ``unwrap_methods``."""
    wrapped: Wrapped = []
    for module_name, class_name, method, wrapper in targets:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            _logger.debug("otel-llm: %s.%s not found; not instrumented", module_name, class_name)
            continue
        if callable(getattr(cls, method, None)):
            wrap_function_wrapper(cls, method, wrapper)
            wrapped.append((cls, method))
    return wrapped


def unwrap_methods(wrapped: Wrapped) -> None:
    for cls, method in wrapped:
        unwrap(cls, method)
    wrapped.clear()


Other = tuple[str, str]
"""(module, class) of another library's instrumentor of the same SDK."""

_stepped_aside: set[str] = set()


def other_instrumentation(others: Iterable[Other]) -> str | None:
    """The module of another library's instrumentor of the same SDK that is active, if any.

    With two instrumentations of one SDK, each call would make two spans; nesting usually lets
    the processor price only one, but not when the other library never makes its span current
    (its span and ours then land in different traces). Stepping aside is the sure way to one
    span per call, and their span is priced just the same (semconv/dialects.yaml).
    """
    modules = sys.modules
    for module_name, class_name in others:
        module = modules.get(module_name)
        if module is None:  # the usual case, checked on every call: no getattr on None
            continue
        instrumentor = getattr(getattr(module, class_name, None), "_instance", None)
        if getattr(instrumentor, "_is_instrumented_by_opentelemetry", False) is True:
            if module_name not in _stepped_aside:
                _stepped_aside.add(module_name)
                _logger.warning(
                    "otel-llm: %s is active, so otel-llm's instrumentation of the same SDK "
                    "steps aside; its spans are priced (disable it to get otel-llm's spans)",
                    module_name,
                )
            return module_name
    return None
