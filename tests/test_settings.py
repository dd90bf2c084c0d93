"""Settings: argument > environment > default; a bad value warns and falls back."""

from __future__ import annotations

import logging

import pytest

from otel_llm import settings


def test_every_setting_is_documented_and_named_consistently() -> None:
    for setting in settings.ALL:
        assert setting.env == "OTEL_LLM_" + setting.name.upper()
        assert setting.doc.strip()


def test_precedence() -> None:
    env = {"OTEL_LLM_MAX_LABEL_VALUES": "50"}
    assert settings.MAX_LABEL_VALUES.resolve(7, env) == 7
    assert settings.MAX_LABEL_VALUES.resolve(None, env) == 50
    assert settings.MAX_LABEL_VALUES.resolve(None, {}) == 200


@pytest.mark.parametrize(
    ("setting", "raw"),
    [
        (settings.MAX_LABEL_VALUES, "many"),
        (settings.MAX_LABEL_VALUES, "0"),
        (settings.MAX_TOKENS, "-1"),
        (settings.PROMETHEUS_PORT, "70000"),
        (settings.ENABLED, "maybe"),
        (settings.EXTRA_LABELS, "bad-label=x.y"),
        (settings.EXTRA_LABELS, "error_type=x.y"),
    ],
)
def test_a_bad_environment_value_warns_and_falls_back(
    setting: settings.Setting[object], raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_llm.settings"):
        assert setting.resolve(None, {setting.env: raw}) == setting.default
    assert setting.env in caplog.text


def test_a_bad_argument_warns_and_falls_back_to_the_environment(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"OTEL_LLM_MAX_TOKENS": "1000"}
    with caplog.at_level(logging.WARNING, logger="otel_llm.settings"):
        assert settings.MAX_TOKENS.resolve("lots", env) == 1000
        assert settings.MAX_TOKENS.resolve(True, env) == 1000
    assert "max_tokens" in caplog.text


def test_parsing() -> None:
    assert settings.ENABLED.resolve(None, {"OTEL_LLM_ENABLED": "false"}) is False
    assert settings.PROMETHEUS_PORT.resolve(None, {"OTEL_LLM_PROMETHEUS_PORT": "9464"}) == 9464
    assert settings.PROMETHEUS_PORT.resolve(0, {"OTEL_LLM_PROMETHEUS_PORT": "9464"}) is None
    labels = settings.EXTRA_LABELS.resolve(
        None, {"OTEL_LLM_EXTRA_LABELS": "feature=otel_llm.context.feature, app.team"}
    )
    assert labels == {"feature": "otel_llm.context.feature", "app_team": "app.team"}
    assert settings.EXTRA_LABELS.resolve(["deployment.environment.name"], {}) == {
        "deployment_environment_name": "deployment.environment.name"
    }
