"""``otel-llm calls`` against a real SQLite store and against a running query API.

The same flags must give the same answer from either source, so most tests run a command
both ways and compare; expectations come from the records written, not from the store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from otel_llm.calllog.api import CallLogAPI
from otel_llm.calllog.auth import hash_key
from otel_llm.calllog.store import open_store
from otel_llm.cli import main
from tests.test_calllog_api import ALL_KEY, KEYS, MODELS, NOW, RECORDS, UNLIMITED, make_records

Run = tuple[int, str, str]


@pytest.fixture(autouse=True)
def _no_call_log_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_LLM_CALL_LOG_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("calls") / "calls.db"
    store = open_store(str(path))
    try:
        store.write(RECORDS)
    finally:
        store.close()
    return str(path)


@pytest.fixture(scope="module")
def api_url(store_path: str) -> Iterator[str]:
    store = open_store(store_path)
    try:
        with CallLogAPI(store, keys=KEYS, limits=UNLIMITED) as served:
            yield f"http://127.0.0.1:{served.port}"
    finally:
        store.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    code = main(["calls", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def both(
    capsys: pytest.CaptureFixture[str], store: str, api: str, command: str, *args: str
) -> tuple[str, str]:
    """The output of one command from the store and from the API (both must succeed)."""
    from_store = run(capsys, command, "--store", store, *args)
    from_api = run(capsys, command, "--api", api, "--api-key", ALL_KEY, *args)
    assert from_store[0] == 0, from_store[2]
    assert from_api[0] == 0, from_api[2]
    return from_store[1], from_api[1]


def newest_first_ids(records: list[Any]) -> list[str]:
    return [r.id for r in sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--model", "gpt-4o", "--sort", "cost", "--asc"],
        ["--status", "error", "--limit", "100"],
        ["--provider", "anthropic", "--service", "search"],
        ["--min-cost", "0.001", "--max-tokens", "2000", "--limit", "3", "--offset", "2"],
        ["--select", "model,cost,created_at", "--sort", "latency"],
        ["--since", RECORDS[8].created_at.isoformat(), "--until", NOW.date().isoformat()],
        ["--user", "user-1", "--feature", "chat", "--project", "beta", "--api-key-id", "key-1"],
    ],
)
def test_list_gives_the_same_json_and_table_from_a_store_and_an_api(
    capsys: pytest.CaptureFixture[str], store_path: str, api_url: str, args: list[str]
) -> None:
    store_json, api_json = both(capsys, store_path, api_url, "list", *args, "--json")
    assert json.loads(store_json) == json.loads(api_json)
    assert json.loads(store_json)["calls"]
    store_table, api_table = both(capsys, store_path, api_url, "list", *args)
    assert store_table == api_table


def test_list_table_is_aligned_and_says_how_to_page_on(
    capsys: pytest.CaptureFixture[str], store_path: str
) -> None:
    code, out, _ = run(capsys, "list", "--store", store_path, "--model", "gpt-4o", "--limit", "4")
    assert code == 0
    lines = out.splitlines()
    header, rule, *rows = lines[: lines.index("")]
    assert header.split() == [
        "created_at",
        "provider",
        "model",
        "status",
        "total_tokens",
        "cost",
        "latency_ms",
        "feature",
        "id",
    ]
    assert set(rule.replace(" ", "")) == {"-"}
    mine = [r for r in RECORDS if r.model == "gpt-4o"]
    expected = newest_first_ids(mine)[:4]
    assert [row.split()[-1] for row in rows] == expected
    # every column starts where its header does
    for row in rows:
        assert row.index("openai") == header.index("provider")
    first = next(r for r in RECORDS if r.id == expected[0])
    assert f"${first.cost.normalize():f}" in rows[0]  # type: ignore[union-attr]
    assert lines[-1] == f"1-4 of {len(mine)} calls; next: --offset 4"


def test_unpriced_calls_show_unknown_cost(
    capsys: pytest.CaptureFixture[str], store_path: str
) -> None:
    code, out, _ = run(capsys, "list", "--store", store_path, "--model", RECORDS[7].model or "")
    assert code == 0
    row = next(line for line in out.splitlines() if line.endswith(RECORDS[7].id))
    assert " unknown " in row
    assert "$0 " not in row


def test_relative_since(capsys: pytest.CaptureFixture[str], store_path: str) -> None:
    # Records are 1 h, 4 h, 7 h, ... before the hour the module was loaded in, which may be an
    # hour or more before now: the count is the records of the last 5 hours as of now (records
    # lie on whole hours, so only a run within the command's own milliseconds of one could
    # see them differ).
    since = datetime.now(UTC) - timedelta(hours=5)
    expected = sum(1 for record in RECORDS if record.created_at >= since)
    assert expected >= 1
    code, out, _ = run(capsys, "count", "--store", store_path, "--since", "5h")
    assert (code, out) == (0, f"{expected}\n")
    # An age beyond the earliest moment (it overflowed: a traceback) means from the start.
    for age in ("999999999d", "100000000000h"):
        code, out, _ = run(capsys, "count", "--store", store_path, "--since", age)
        assert (code, out) == (0, f"{len(RECORDS)}\n")


def test_show_one_call_and_its_details(
    capsys: pytest.CaptureFixture[str], store_path: str, api_url: str
) -> None:
    record = RECORDS[1]
    store_out, api_out = both(capsys, store_path, api_url, "show", record.id, "--details")
    assert store_out == api_out
    lines = dict(
        re.split(r"\s{2,}", line, maxsplit=1) for line in store_out.split("\n\n")[0].splitlines()
    )
    assert lines["id"] == record.id
    assert lines["model"] == record.model
    assert lines["cost"] == f"${record.cost.normalize():f}"  # type: ignore[union-attr]
    assert lines["streaming"] == "yes"
    assert f"request_prompt:\n{record.request_prompt}\n" in store_out
    assert f"response_preview:\n{record.response_preview}\n" in store_out
    store_json, api_json = both(capsys, store_path, api_url, "show", record.id, "--json")
    assert json.loads(store_json) == json.loads(api_json)
    assert json.loads(store_json)["trace_id"] == record.trace_id


def test_show_an_unknown_call_fails_cleanly(
    capsys: pytest.CaptureFixture[str], store_path: str, api_url: str
) -> None:
    missing = f"{999:032x}-{999:016x}"
    code, out, err = run(capsys, "show", missing, "--store", store_path)
    assert (code, out) == (1, "")
    assert f"no call with id '{missing}'" in err
    code, _, err = run(capsys, "show", missing, "--api", api_url, "--api-key", ALL_KEY)
    assert code == 1
    assert "404" in err


def test_count(capsys: pytest.CaptureFixture[str], store_path: str, api_url: str) -> None:
    expected = sum(r.provider == "openai" and r.status == "success" for r in RECORDS)
    store_out, api_out = both(
        capsys, store_path, api_url, "count", "--provider", "openai", "--status", "success"
    )
    assert store_out == api_out == f"{expected}\n"
    store_json, _ = both(capsys, store_path, api_url, "count", "--json")
    assert json.loads(store_json) == {"count": len(RECORDS)}


def test_stats_tables_and_json(
    capsys: pytest.CaptureFixture[str], store_path: str, api_url: str
) -> None:
    store_json, api_json = both(
        capsys, store_path, api_url, "stats", "--group-by", "model", "--json"
    )
    assert json.loads(store_json) == json.loads(api_json)
    assert json.loads(store_json)["stats"]["total_requests"] == len(RECORDS)
    store_out, api_out = both(capsys, store_path, api_url, "stats", "--group-by", "model")
    assert store_out == api_out
    pairs = dict(
        re.split(r"\s{2,}", line, maxsplit=1) for line in store_out.split("\n\n")[1].splitlines()
    )
    assert pairs["total_requests"] == str(len(RECORDS))
    assert pairs["failed_requests"] == "4"
    assert pairs["error_rate"] == f"{100 * 4 / len(RECORDS):.1f}%"
    assert pairs["unpriced_requests"] == "1"
    by_model = store_out.split("by model:\n")[1].split("\n\n")[0].splitlines()
    assert by_model[0].split()[:2] == ["group", "total_requests"]
    counts = {line.split()[0]: int(line.split()[1]) for line in by_model[2:]}
    assert counts == {model: sum(r.model == model for r in RECORDS) for model in MODELS}
    assert "by day:" in store_out
    code, out, _ = run(capsys, "stats", "--store", store_path, "--project", "alpha", "--json")
    assert code == 0
    assert json.loads(out)["stats"]["total_requests"] == sum(r.project == "alpha" for r in RECORDS)
    store_json, api_json = both(
        capsys, store_path, api_url, "stats", "--status", "error", "--group-by", "api_key", "--json"
    )
    assert json.loads(store_json) == json.loads(api_json)
    groups = {g["group"]: g["total_requests"] for g in json.loads(store_json)["groups"]}
    failed = [r for r in RECORDS if r.status == "error"]
    assert groups == {
        k: sum(r.api_key_id == k for r in failed) for k in {r.api_key_id for r in failed}
    }


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["list", "--since", "last tuesday"], 1, ["--since", "ISO 8601"]),
        (["list", "--min-cost", "cheap"], 1, ["--min-cost must be a number"]),
        (["list", "--select", "model,prompt"], 1, ["unknown field 'prompt'"]),
        (["list", "--limit", "101"], 2, ["between 1 and 100"]),
        (["list", "--sort", "price"], 2, ["invalid choice"]),
        (["stats", "--group-by", "month"], 2, ["invalid choice"]),
        (
            ["stats", "--user", "u1", "--api-key-id", "k1"],
            1,
            ["cannot combine user and api_key_id"],
        ),
        (["stats", "--since", "2025-02-01", "--until", "2025-01-01"], 1, ["before"]),
        (["stats", "--until", "9999-12-31T12:00:00Z"], 1, ["--until", "from 1900-01-01"]),
        (["count", "--until", "0001-01-02"], 1, ["--until", "from 1900-01-01"]),
    ],
)
def test_mistakes_are_one_line_messages(
    capsys: pytest.CaptureFixture[str],
    store_path: str,
    args: list[str],
    code: int,
    words: list[str],
) -> None:
    got, out, err = run(capsys, *args, "--store", store_path)
    assert got == code
    assert out == ""
    assert "Traceback" not in err
    for word in words:
        assert word in err


def test_source_mistakes(
    capsys: pytest.CaptureFixture[str], store_path: str, api_url: str, tmp_path: Path
) -> None:
    code, _, err = run(capsys, "list", "--store", str(tmp_path / "none.db"))
    assert code == 1
    assert "no call log at" in err
    assert not (tmp_path / "none.db").exists()  # a reader does not create an empty store
    code, _, err = run(capsys, "list", "--api", api_url)
    assert code == 1
    assert "--api-key" in err
    code, _, err = run(capsys, "list", "--api", api_url, "--store", store_path, "--api-key", "k")
    assert code == 1
    assert "not both" in err
    code, _, err = run(capsys, "list", "--api", api_url, "--api-key", "wrong")
    assert code == 1
    assert "401: unknown API key" in err
    code, _, err = run(capsys, "list", "--api", "ftp://example", "--api-key", "k")
    assert code == 1
    assert "http://" in err
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    code, _, err = run(capsys, "list", "--api", f"http://127.0.0.1:{port}", "--api-key", "k")
    assert code == 1
    assert "cannot reach the call-log API" in err


def test_the_client_key_setting(
    capsys: pytest.CaptureFixture[str], api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_LLM_CALL_LOG_CLIENT_KEY", ALL_KEY)
    code, out, err = run(capsys, "count", "--api", api_url + "/api/v1/calls/")
    assert code == 0, err
    assert out == f"{len(RECORDS)}\n"


def test_prune_drops_old_content_and_records_and_daily_stats_remain(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = str(tmp_path / "calls.db")
    old = make_records(4, NOW - timedelta(days=100))
    middle = [
        dataclasses.replace(
            r,
            id=f"{i + 100:032x}-{i + 100:016x}",
            trace_id=f"{i + 100:032x}",
            span_id=f"{i + 100:016x}",
        )
        for i, r in enumerate(make_records(4, NOW - timedelta(days=40)))
    ]
    store = open_store(path)
    try:
        store.write(old + middle)
    finally:
        store.close()
    code, out, err = run(capsys, "prune", "--store", path, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["records_deleted"] == 4
    assert result["content_deleted"] == 2  # one call of each set had content
    assert run(capsys, "count", "--store", path)[1] == "4\n"
    code, out, _ = run(capsys, "show", middle[1].id, "--store", path, "--details")
    assert code == 0
    assert "request_prompt:\n(not captured, or no longer kept)" in out
    since = (NOW - timedelta(days=101)).date().isoformat()
    code, out, _ = run(capsys, "stats", "--store", path, "--since", since, "--json")
    assert code == 0
    assert json.loads(out)["stats"]["total_requests"] == 8
    code, out, _ = run(capsys, "prune", "--store", path, "--record-days", "30")
    assert code == 0
    assert "4 call records" in out
    assert run(capsys, "count", "--store", path)[1] == "0\n"


def test_keygen_and_serve(
    capsys: pytest.CaptureFixture[str], store_path: str, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "keygen", "--name", "dashboards", "--projects", "alpha")
    assert code == 0
    key = re.search(r"key \(give it to the client; it is not stored\): (\S+)", out)
    digest = re.search(r"sha256: ([0-9a-f]{64})", out)
    assert key is not None
    assert digest is not None
    assert hash_key(key[1]) == digest[1]
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("keys:\n" + out.split("(keys:):\n")[1])

    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_LLM_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_llm",
            "calls",
            "serve",
            "--store",
            store_path,
            "--endpoint",
            "127.0.0.1:0",
            "--api-keys-file",
            str(keys_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the server printed nothing in 20 s"
        line = process.stdout.readline()
        found = re.search(r"serving the call log on (http://127\.0\.0\.1:\d+)/api/v1/calls", line)
        assert found is not None, line + (
            process.stderr.read() if process.poll() is not None else ""
        )
        assert "(1 API keys)" in line
        code, out, err = run(capsys, "count", "--api", found[1], "--api-key", key[1])
        assert code == 0, err
        assert out == f"{sum(r.project == 'alpha' for r in RECORDS)}\n"  # the key's project only
        code, _, err = run(
            capsys, "count", "--api", found[1], "--api-key", key[1], "--project", "beta"
        )
        assert code == 1
        assert "403" in err
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_serve_without_keys_or_on_a_busy_port(
    capsys: pytest.CaptureFixture[str], store_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "serve", "--store", store_path, "--endpoint", "127.0.0.1:0")
    assert code == 1
    assert "no API keys" in err
    monkeypatch.setenv("OTEL_LLM_CALL_LOG_API_KEYS", "ops=some-long-key")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run(
            capsys, "serve", "--store", store_path, "--endpoint", f"127.0.0.1:{port}"
        )
    assert code == 1
    assert "cannot serve on" in err
    code, _, err = run(capsys, "serve", "--store", store_path, "--endpoint", "nowhere")
    assert code == 1
    assert "host:port" in err
