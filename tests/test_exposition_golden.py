"""The Prometheus exposition, byte for byte: the golden files were written by the recorder that
updated prometheus_client's own metric objects (see tests/support/exposition_scenario.py); the
accumulators rendered by a custom collector must expose exactly the same."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import disable_created_metrics, enable_created_metrics

from tests.support import exposition_scenario

GOLDEN = Path(__file__).parent / "data" / "exposition"


@pytest.fixture(scope="module")
def expositions() -> dict[str, bytes]:
    return exposition_scenario.expositions()


@pytest.fixture
def without_created() -> Iterator[None]:
    disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        enable_created_metrics()  # type: ignore[no-untyped-call]


def _lines(body: bytes) -> list[str]:
    return body.decode("utf-8").split("\n")


@pytest.mark.parametrize("name", exposition_scenario.FILES)
def test_the_exposition_is_byte_identical(expositions: dict[str, bytes], name: str) -> None:
    # Lines first, for a readable diff; then the bytes themselves.
    golden = (GOLDEN / name).read_bytes()
    assert _lines(expositions[name]) == _lines(golden)
    assert expositions[name] == golden


@pytest.mark.usefixtures("without_created")
def test_without_created_series_only_those_lines_go() -> None:
    # prometheus_client's switch (PROMETHEUS_DISABLE_CREATED_SERIES) applies to our families too.
    for name, body in exposition_scenario.expositions().items():
        golden = _lines((GOLDEN / name).read_bytes())
        # Their samples go, and in the text format the HELP and TYPE lines naming them.
        expected = [line for line in golden if "_created" not in line]
        assert _lines(body) == expected, name
