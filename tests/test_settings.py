"""Settings: argument > environment > default; a bad value warns and falls back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from otel_llm import settings
from otel_llm.calllog.config import CallLogConfig
from otel_llm.collector.config import CollectorConfig


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


def test_content_capture_honours_the_standard_variable() -> None:
    standard = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
    assert settings.CAPTURE_CONTENT.resolve(None, {}) is False
    assert settings.CAPTURE_CONTENT.resolve(None, {standard: "true"}) is True
    assert settings.CAPTURE_CONTENT.resolve(None, {standard: "SPAN_ONLY"}) is True
    assert settings.CAPTURE_CONTENT.resolve(None, {standard: "EVENT_ONLY"}) is False
    both = {standard: "true", "OTEL_LLM_CAPTURE_CONTENT": "false"}
    assert settings.CAPTURE_CONTENT.resolve(None, both) is False
    assert settings.CAPTURE_CONTENT.resolve(True, both) is True


def test_the_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for setting in settings.ALL:
        assert f"`{setting.env}`" in readme, setting.env
        assert f"`{setting.name}`" in readme, setting.name


def test_none_turns_a_listener_off_in_every_spelling() -> None:
    endpoint = settings.COLLECTOR_GRPC_ENDPOINT
    assert endpoint.resolve("none", {}) is None
    assert endpoint.resolve(None, {endpoint.env: " NONE "}) is None
    assert endpoint.resolve(None, {}, {endpoint.name: "none"}) is None
    assert endpoint.resolve(" 0.0.0.0:4317 ", {}) == "0.0.0.0:4317"
    # The store stays text: the exporter and `otel-llm calls` read it as a path.
    assert settings.CALL_LOG_STORE.resolve("none", {}) == "none"


def test_state_defaults_are_computed_when_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert settings.COLLECTOR_QUEUE_DIR.resolve(None, {}) == str(tmp_path / "otel-llm" / "queue")
    assert settings.CALL_LOG_STORE.default == str(tmp_path / "otel-llm" / "calls.db")
    assert settings.COLLECTOR_QUEUE_DIR.resolve(tmp_path / "q", {}) == str(tmp_path / "q")


def test_config_objects_resolve_argument_environment_file_default() -> None:
    file = {"collector_forward_workers": 3, "collector_upstream_timeout": "2.5"}
    env = {"OTEL_LLM_COLLECTOR_FORWARD_WORKERS": "5", "OTEL_LLM_COLLECTOR_HTTP_ENDPOINT": "none"}
    config = CollectorConfig.from_settings(file=file, environ=env, queue_dir="/q")
    assert config.forward_workers == 5  # environment over file
    assert config.upstream_timeout == 2.5  # file over default
    assert config.retry_after == 5.0  # default
    assert config.queue_dir == "/q"  # argument
    assert config.http_endpoint is None
    assert config.grpc_workers == 8  # default
    assert CollectorConfig.from_settings(environ=env, forward_workers=7).forward_workers == 7
    assert CallLogConfig.from_settings(environ={}, store="none").off
    assert not CallLogConfig.from_settings(environ={}, store="calls.db").off
    flags = {binding.flag for binding in CollectorConfig.bindings()}
    assert {"--upstream", "--upstream-insecure", "--queue-dir"} <= flags
