"""``otel-llm collector`` as a user runs it: a subprocess configured by flags, environment and a
config file, serving until SIGTERM."""

from __future__ import annotations

import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_llm import _semconv as sc
from otel_llm import settings
from otel_llm.cli import main
from otel_llm.collector.cli import load_config, resolve_settings
from tests.support.collector_process import CollectorProcess
from tests.support.otlp_receiver import OTLPReceiver


@pytest.fixture
def run(tmp_path: Path) -> Iterator[type[CollectorProcess]]:
    started: list[CollectorProcess] = []

    class Tracked(CollectorProcess):
        def __init__(self, args: list[str], env: dict[str, str] | None = None):
            super().__init__(args, env)
            started.append(self)

    yield Tracked
    for collector in started:
        collector.kill()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - 127.0.0.1
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def send_llm_span(http_endpoint: str) -> None:
    exporter = OTLPSpanExporter(endpoint=f"http://{http_endpoint}/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": "cli-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    attributes = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        sc.GEN_AI_USAGE_INPUT_TOKENS: 1000,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 100,
    }
    tracer.start_span("chat", attributes=attributes).end()
    provider.shutdown()


def test_runs_with_flags_forwards_priced_spans_and_stops_on_sigterm(
    run: type[CollectorProcess], tmp_path: Path
) -> None:
    with OTLPReceiver() as upstream:
        collector = run(
            [
                "--grpc-endpoint=127.0.0.1:0",
                "--http-endpoint=127.0.0.1:0",
                "--metrics-endpoint=127.0.0.1:0",
                f"--upstream={upstream.grpc_endpoint}",
                "--upstream-insecure",
                f"--queue-dir={tmp_path / 'queue'}",
                "--extra-labels=team=app.team",
            ]
        )
        assert collector.http, "".join(collector.log)
        send_llm_span(collector.http)
        (span,) = upstream.wait_for_spans(1)
        assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] > 0
        status, body = get(f"http://{collector.metrics}/health")
        assert status == 200
        assert json.loads(body)["upstream"]["endpoint"] == upstream.grpc_endpoint
        status, body = get(f"http://{collector.metrics}/metrics")
        text = body.decode()
        assert 'service_name="cli-test"' in text
        assert 'team=""' in text  # the extra label flag took effect
        assert collector.terminate() == 0
    assert "stopping" in "".join(collector.log)


def test_runs_from_a_config_file_with_flag_and_environment_precedence(
    run: type[CollectorProcess], tmp_path: Path
) -> None:
    with OTLPReceiver() as upstream:
        config = tmp_path / "collector.yaml"
        config.write_text(
            "\n".join(
                [
                    "collector_grpc_endpoint: 127.0.0.1:0",
                    "http_endpoint: 127.0.0.1:0",  # the collector_ prefix may be left out
                    "metrics_endpoint: 127.0.0.1:1",  # overridden by the flag
                    f"upstream_endpoint: http://127.0.0.1:{upstream.http_port}",
                    "upstream_protocol: http/protobuf",
                    "upstream_headers: {x-api-key: secret}",
                    "queue_max_bytes: 1MiB",
                    f"queue_dir: {tmp_path / 'queue'}",
                    "max_label_values: lots",  # a bad value: warns, default used
                    "no_such_setting: 1",  # a typo: warns, ignored
                ]
            )
        )
        collector = run(
            ["--config", str(config), "--metrics-endpoint=127.0.0.1:0"],
            env={"OTEL_LLM_COLLECTOR_FORWARD_WORKERS": "1"},
        )
        assert collector.http, "".join(collector.log)
        log = "".join(collector.log)
        assert "no_such_setting" in log
        assert "max_label_values" in log
        send_llm_span(collector.http)
        (span,) = upstream.wait_for_spans(1)
        assert span.transport == "http"
        assert span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT] > 0
        status, body = get(f"http://{collector.metrics}/health")
        assert status == 200
        assert json.loads(body)["queue"]["max_bytes"] == 1 << 20
        assert collector.terminate() == 0


def test_precedence_flag_then_environment_then_config_then_default() -> None:
    config = {
        "collector_forward_workers": 3,
        "collector_upstream_timeout": "2.5",
        "collector_queue_max_bytes": "bad size",
    }
    env = {"OTEL_LLM_COLLECTOR_FORWARD_WORKERS": "5"}
    values = resolve_settings({}, config, env)
    assert values["collector_forward_workers"] == 5  # environment over config file
    assert values["collector_upstream_timeout"] == 2.5  # config file over default
    assert values["collector_queue_max_bytes"] == settings.COLLECTOR_QUEUE_MAX_BYTES.default
    flags = {"collector_forward_workers": 7}
    assert resolve_settings(flags, config, env)["collector_forward_workers"] == 7
    assert resolve_settings({}, {}, {})["collector_grpc_endpoint"] == "127.0.0.1:4317"


def test_user_mistakes_end_with_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["collector", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read the config file" in capsys.readouterr().err

    broken = tmp_path / "broken.yaml"
    broken.write_text("upstream_endpoint: [unclosed\n")
    assert main(["collector", "--config", str(broken)]) == 1
    assert "not valid YAML" in capsys.readouterr().err

    assert main(["collector", "--upstream-protocol", "carrier-pigeon"]) == 2
    assert main(["collector", "--grpc-endpoint", "no-port"]) == 2

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.CRITICAL):
            code = main(
                [
                    "collector",
                    f"--http-endpoint=127.0.0.1:{port}",
                    "--grpc-endpoint=none",
                    "--metrics-endpoint=none",
                ]
            )
    assert code == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


def test_config_file_keys_may_omit_the_prefix(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("upstream_endpoint: jaeger:4317\nprice_overrides: prices.yaml\n")
    assert load_config(str(config)) == {
        "collector_upstream_endpoint": "jaeger:4317",
        "price_overrides": "prices.yaml",
    }
