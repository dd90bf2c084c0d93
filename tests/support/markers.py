"""Markers put on collected tests from what they use, so the test bodies carry none (the markers
themselves are registered, with their meaning, in pyproject.toml).

- ``venv`` / ``prometheus`` / ``browser``: the test, a fixture it requests or a function of its
  module they call names a helper of ``tests.support.venvs`` / ``tests.support.prometheus`` /
  ``tests.support.browser`` that builds a virtualenv / runs a Prometheus binary / a browser.
- ``postgres``: the test requests ``pg_cluster``, or runs with the ``"postgres"`` call-store
  backend (``tests.support.postgres.BACKENDS``) as a parameter.
- ``browser``: the test or a fixture it requests starts a browser
  (``tests.support.browser.start_browser``).
- ``slow``: the tests in ``SLOW`` (measured), and every ``venv`` and ``browser`` test.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from types import CodeType, ModuleType
from typing import Any

import pytest

from tests.support import browser, prometheus, venvs

# What starts the outside thing each marker is about.
HELPERS: dict[str, tuple[Any, ...]] = {
    "venv": (venvs.ensure_venv, venvs.run_script),
    "prometheus": (prometheus.start_prometheus, prometheus.tool),
    "browser": (browser.start_browser,),
}

SLOW: dict[str, tuple[str, ...]] = {
    "test_call_reader": ("test_arbitrary_attributes_never_break_the_reader",),  # 38 s
    "test_calllog_caps": (
        "test_a_flood_of_distinct_model_names_keeps_stats_fast_small_and_exact",  # 33 s, 46 s
        "test_a_store_flooded_before_the_cap_answers_within_the_budget",  # 11 s, 15 s
    ),
    "test_calllog_deadline": (  # a store of 200,000 calls: 10-15 s to fill, per backend
        "test_the_store_is_as_big_as_the_tests_need",
        "test_a_read_past_its_budget_is_stopped_and_answered_503",
        "test_another_keys_read_is_not_held_up_by_a_read_past_its_budget",
        "test_good_reads_answer_within_a_small_budget",
    ),
    "test_calllog_durable": (
        "test_sigkill_at_random_points_under_load_loses_no_acknowledged_call",  # 25 s
        "test_calls_acknowledged_just_before_a_sigkill_are_logged_after_the_restart",  # 3x 5 s
    ),
    "test_calllog_e2e": ("test_app_to_collector_to_store_to_query_api",),  # 5 s + 2 s
    "test_rollups": ("test_memory_stays_bounded_with_many_open_traces_and_agents",),  # 9 s
    "test_policies_collector": (
        "test_two_collectors_on_one_postgresql_agree_on_the_spend_within_the_sync_interval",  # 7 s
    ),
    "test_replicas": (
        "test_three_replicas_on_one_postgresql_store_each_call_once_and_agree_on_the_spend",  # 15 s
    ),
    "test_collector_config": (
        "test_real_prometheus_evaluates_every_dashboard_and_rule_expression",
    ),
    "test_collector_end_to_end": (
        "test_spans_from_an_sdk_app_are_priced_forwarded_and_every_expression_has_data",  # 11 s
    ),
    "test_collector_faults": (
        "test_sdk_exporters_retry_on_back_pressure_and_their_spans_are_delivered",  # 8 s
        "test_sigkill_under_load_then_restart_delivers_every_acknowledged_span",  # 5 s
        "test_bad_requests_get_their_codes_and_the_service_keeps_serving",  # 4 s
        "test_upstream_down_then_back_loses_no_acknowledged_span",  # 3 s
    ),
    "test_collector_grpc_burst": (
        "test_sdk_grpc_exporters_in_a_burst_deliver_every_span_they_were_told_was_accepted",  # 8 s
        "test_a_raw_grpc_burst_is_refused_retryably_counted_and_loses_nothing",  # 3 s
    ),
    "test_collector_queue": (
        "test_sigkill_during_puts_loses_no_acknowledged_batch",  # 9 s + 1 s
        "test_concurrent_puts_and_gets_deliver_each_batch_once",  # 5 s
    ),
    "test_configure": ("test_configure_without_a_provider_exports_from_the_environment",),  # 2x3 s
    "test_content": (
        "test_any_content_gives_bounded_valid_redacted_json",  # 13 s
        "test_content_that_fits_is_recorded_unchanged",  # 2 s
    ),
    "test_demo": ("test_console_script_serves_metrics_then_exits",),  # 26 s
    # One `demo --serve` subprocess for the module (3-6 s to start): every test that asks it.
    "test_demo_serve": (
        "test_the_month_is_in_the_call_log",
        "test_errors_include_rate_limits",
        "test_an_agent_run_is_one_trace",
        "test_a_conversation_spans_several_traces",
        "test_a_wrong_key_gets_401",
        "test_the_page_is_served",
        "test_sigint_stops_it_cleanly",
    ),
    "test_dialects": ("test_dialect_tokens_are_read_once",),  # 41 s
    "test_instrument_openai": (
        "test_zero_code_instrumentation_can_be_switched_off",  # 10 s
        "test_zero_code_under_opentelemetry_instrument",  # 10 s
    ),
    "test_manual": ("test_the_manual_api_never_raises_whatever_it_is_given",),  # 45 s
    "test_pricing_oracle": ("test_every_price_on_the_grid", "test_random_usages"),  # 8 s, 4 s
    "test_pricing_units": (
        "test_the_integer_path_equals_the_decimal_path_for_every_flat_price",  # 3 s
    ),
    "test_processor": ("test_malformed_attributes_never_raise",),  # 3 s
    "test_rotel": ("test_throughput_benchmark_harness_drains_through_rotel",),  # 5 s
}
"""Tests (every parameter of each) that take two seconds or more: module -> names, with the
time measured with ``--durations`` on a busy 2-core machine. Each module keeps at least one test
out of this list (test_collector_faults its 2.5 s queue-full test, test_multiprocess its only
one), so ``-m "not slow"`` still runs every module; ``venv`` tests are slow too.
``tests/test_markers.py`` checks that every name here is a test."""


def _codes(code: CodeType) -> Iterator[CodeType]:
    """``code`` and the code nested in it (lambdas, inner functions, comprehensions)."""
    yield code
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            yield from _codes(constant)


def _referenced(module: ModuleType, roots: Iterable[Any]) -> set[int]:
    """The ids of the module-level objects ``roots`` name, following the module's own functions
    and fixtures they call (a fixture is read through its ``__wrapped__`` function)."""
    seen: set[int] = set()
    pending = list(roots)
    while pending:
        function = inspect.unwrap(pending.pop())
        code = getattr(function, "__code__", None)
        if code is None or id(function) in seen:
            continue
        seen.add(id(function))
        for nested in _codes(code):
            for name in nested.co_names:
                value = vars(module).get(name)
                if value is None:
                    continue
                seen.add(id(value))
                if getattr(inspect.unwrap(value), "__module__", None) == module.__name__:
                    pending.append(value)
    return seen


def markers_for(item: pytest.Item) -> set[str]:
    """The markers ``item`` gets from what it uses."""
    names: set[str] = set()
    module = getattr(item, "module", None)
    function = getattr(item, "function", None)
    if module is None or function is None:
        return names
    fixtures = [vars(module)[name] for name in item.fixturenames if name in vars(module)]
    used = _referenced(module, [function, *fixtures])
    names |= {marker for marker, helpers in HELPERS.items() if any(id(h) in used for h in helpers)}
    callspec = getattr(item, "callspec", None)
    if "pg_cluster" in item.fixturenames or (
        callspec is not None and "postgres" in callspec.params.values()
    ):
        names.add("postgres")
    if (
        "venv" in names
        or "browser" in names
        or function.__name__ in SLOW.get(module.__name__.rpartition(".")[2], ())
    ):
        names.add("slow")
    return names


def apply(items: Iterable[pytest.Item]) -> None:
    for item in items:
        for name in sorted(markers_for(item)):
            item.add_marker(name)
