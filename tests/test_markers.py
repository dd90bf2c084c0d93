"""The markers tests/support/markers.py puts on tests: registered, found from what a test uses,
and a slow list that names tests that exist."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from tests.support.markers import HELPERS, SLOW, markers_for


def test_every_marker_is_registered(pytestconfig: pytest.Config) -> None:
    registered = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert {"slow", "postgres", "browser", *HELPERS} <= registered


def test_every_slow_test_named_exists() -> None:
    """A renamed slow test would otherwise slip into the fast lane unnoticed."""
    for module_name, names in SLOW.items():
        module = importlib.import_module(f"tests.{module_name}")
        missing = [name for name in names if not callable(getattr(module, name, None))]
        assert not missing, f"tests/support/markers.py SLOW names no test {module_name}.{missing}"


@dataclass
class _Item:
    """What markers_for reads of a collected test."""

    module: ModuleType
    function: Callable[..., Any]
    fixturenames: list[str] = field(default_factory=list)
    callspec: Any = None


@dataclass
class _CallSpec:
    params: dict[str, Any]


def _item(module_name: str, test: str, *fixtures: str, **params: Any) -> Any:
    module = importlib.import_module(f"tests.{module_name}")
    return _Item(
        module, getattr(module, test), list(fixtures), _CallSpec(params) if params else None
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        # The helper named in the test's own body.
        (_item("test_collector_config", "test_promtool_check_rules"), {"prometheus"}),
        # ... in a fixture it requests; and in the slow list.
        (
            _item(
                "test_collector_config",
                "test_real_prometheus_evaluates_every_dashboard_and_rule_expression",
                "prometheus",
                "tmp_path",
            ),
            {"prometheus", "slow"},
        ),
        # ... in a function of the module that a fixture calls: a venv test is slow too.
        (
            _item("test_sdk_versions", "test_configure_prices_exported_spans", "report"),
            {"venv", "slow"},
        ),
        # The PostgreSQL backend as a parameter; the SQLite one needs no marker.
        (
            _item(
                "test_calllog_retention",
                "test_prune_uses_the_settings",
                "store",
                "store_url",
                store_url="postgres",
            ),
            {"postgres"},
        ),
        (
            _item(
                "test_calllog_retention",
                "test_prune_uses_the_settings",
                "store",
                "store_url",
                store_url="sqlite",
            ),
            set(),
        ),
        (_item("test_markers", "test_every_marker_is_registered", "pytestconfig"), set()),
    ],
)
def test_markers_come_from_what_the_test_uses(item: Any, expected: set[str]) -> None:
    assert markers_for(item) == expected
