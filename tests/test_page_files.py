"""The page's files as served by the call-log API (``calllog/webpage.py``): content types,
gzip, ETags, the security headers on every page response, 404 for anything not a file of the
page (path traversal included), the vendored uPlot's digests and the page's total weight."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_llm.calllog.api import CallLogAPI
from otel_llm.calllog.auth import KeyRing
from otel_llm.calllog.store import open_store
from otel_llm.calllog.webpage import CONTENT_SECURITY_POLICY, SECURITY_HEADERS

WEB = Path(__file__).resolve().parent.parent / "otel_llm" / "calllog" / "web"
MAX_PAGE_GZIP_BYTES = 300 * 1024
TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallLogAPI]:
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('page')}/calls.db")
    served = CallLogAPI(store, keys=KeyRing.inline("page=page-secret"), trace_url=TRACE_URL)
    with served:
        yield served
    store.close()


def fetch(
    api: CallLogAPI, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        connection.request(
            method, path, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def page_paths(html: str) -> list[str]:
    """Everything index.html loads, and the ES modules those import, transitively."""
    found = re.findall(r'(?:src|href)="(/[^"]+)"', html)
    pending = [path for path in found if path.endswith(".js")]
    while pending:
        module = pending.pop()
        text = (WEB / module.lstrip("/")).read_text()
        base = module.rsplit("/", 1)[0]
        for imported in re.findall(r'from "(\.{1,2}/[^"]+)"', text):
            parts = [*base.split("/"), *imported.split("/")]
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part not in (".", ""):
                    resolved.append(part)
            path = "/" + "/".join(resolved)
            if path not in found:
                found.append(path)
                pending.append(path)
    return found


def test_the_page_is_served_at_the_root_with_its_security_headers(api: CallLogAPI) -> None:
    status, headers, body = fetch(api, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    for name, value in SECURITY_HEADERS:
        assert headers[name.lower()] == value
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert body == (WEB / "index.html").read_bytes()
    # No inline script or style: the policy would refuse them.
    assert not re.search(rb"<script(?![^>]*\bsrc=)", body)
    assert b"<style" not in body
    assert b" style=" not in body


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/views/calls.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("/vendor/uPlot.min.css", "text/css; charset=utf-8"),
    ],
)
def test_each_file_has_its_type_gzip_and_an_etag(
    api: CallLogAPI, path: str, content_type: str
) -> None:
    plain_status, plain, body = fetch(api, path)
    assert plain_status == 200
    assert plain["content-type"] == content_type
    assert "content-encoding" not in plain
    assert body == (WEB / path.lstrip("/")).read_bytes()
    assert plain["cache-control"] == "no-cache"
    assert plain["vary"] == "Accept-Encoding"
    status, zipped, compressed = fetch(api, path, Accept_Encoding="br, gzip;q=0.8")
    assert status == 200
    assert zipped["content-encoding"] == "gzip"
    assert gzip.decompress(compressed) == body
    assert len(compressed) < len(body)
    assert zipped["etag"] == plain["etag"]
    # Compressed once: the same bytes each time.
    assert fetch(api, path, Accept_Encoding="gzip")[2] == compressed
    assert fetch(api, path, Accept_Encoding="gzip;q=0")[1].get("content-encoding") is None
    status, revalidated, empty = fetch(api, path, If_None_Match=plain["etag"])
    assert (status, empty) == (304, b"")
    assert revalidated["etag"] == plain["etag"]
    assert revalidated["content-security-policy"] == CONTENT_SECURITY_POLICY
    head_status, head, head_body = fetch(api, path, "HEAD")
    assert (head_status, head_body) == (200, b"")
    assert head["content-length"] == str(len(body))


@pytest.mark.parametrize(
    "path",
    [
        "/nothing.js",
        "/../pyproject.toml",
        "/..%2f..%2fpyproject.toml",
        "/%2e%2e/%2e%2e/pyproject.toml",
        "/views/../app.js",
        "/views/%2e%2e/app.js",
        "//etc/passwd",
        "/..\\..\\app.py",
        "/webpage.py",
        "/__init__.py",
        "/vendor/README",
        "/vendor/../../app.py",
        "/index.html/",
        "/%00",
        "/<script>alert(1)</script>",
    ],
)
def test_anything_else_is_404_and_reflects_nothing(api: CallLogAPI, path: str) -> None:
    status, headers, body = fetch(api, path)
    assert status == 404
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert b"script" not in body
    assert b"passwd" not in body
    assert b"pyproject" not in body


def test_the_page_only_reads_and_the_api_keeps_its_answers(api: CallLogAPI) -> None:
    status, headers, _ = fetch(api, "/", "POST")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    # The API is still the API: a key is needed, an unknown endpoint is JSON.
    status, _, body = fetch(api, "/api/v1/calls")
    assert status == 401
    assert json.loads(body)["error"]["code"] == "unauthorized"
    status, _, body = fetch(api, "/api/v1/nothing", Authorization="Bearer page-secret")
    assert status == 404
    assert json.loads(body)["error"]["message"].startswith("no such endpoint")
    status, _, body = fetch(api, "/api/v1/calls", Authorization="Bearer page-secret")
    assert status == 200
    assert json.loads(body)["pagination"]["total"] == 0


def test_the_config_gives_the_trace_link_template_without_a_key(api: CallLogAPI) -> None:
    status, headers, body = fetch(api, "/config.json")
    assert status == 200
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert json.loads(body) == {"trace_url": TRACE_URL}


def test_the_whole_page_weighs_under_300_kb_compressed() -> None:
    paths = ["/index.html", *page_paths((WEB / "index.html").read_text())]
    assert {"/app.js", "/api.js", "/views/activity.js", "/vendor/uPlot.iife.min.js"} <= set(paths)
    weight = 0
    for path in paths:
        if path.startswith("data:"):
            continue
        weight += len(gzip.compress((WEB / path.lstrip("/")).read_bytes(), compresslevel=9))
    assert 20_000 < weight < MAX_PAGE_GZIP_BYTES, weight


def test_the_vendored_uplot_is_the_pinned_release() -> None:
    readme = (WEB / "vendor" / "README").read_text()
    assert "uPlot 1.6.32" in readme
    pinned = dict(
        (name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M)
    )
    assert set(pinned) == {"uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE"}
    for name, digest in pinned.items():
        assert hashlib.sha256((WEB / "vendor" / name).read_bytes()).hexdigest() == digest
    assert "MIT License" in (WEB / "vendor" / "uPlot.LICENSE").read_text()


def test_the_page_never_turns_data_into_markup() -> None:
    """Span values are attacker-controlled: the page's own scripts build the DOM from text
    nodes only (the browser tests show payloads stay text)."""
    for script in [*WEB.glob("*.js"), *WEB.glob("views/*.js")]:
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{script.name} uses {sink}"
