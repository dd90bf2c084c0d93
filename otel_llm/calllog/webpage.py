"""The call log's page: the static files of ``calllog/web/`` served at ``/`` beside the JSON
API, and the page's small configuration (``/config.json``: the trace link template).

The files are a fixed set, read from the package once: a request names one of them or gets
404 -- a path is looked up in that set, never joined to a directory, so no ``..`` or encoded
slash can reach another file. Each file is gzipped once, when the set is loaded; a client that
accepts gzip gets the compressed bytes. Every page response carries the security headers
(``SECURITY_HEADERS``): the Content-Security-Policy allows only this origin's scripts, styles
and connections (no inline script, no inline style, no frames), so a value from a span that
reached the DOM as markup could still not run. The page itself renders every value as text.

No authentication here: the files hold no data; every datum the page shows comes from the
JSON API with the key the user typed in.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from urllib.parse import unquote, urlsplit

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
CONFIG_PATH = "/config.json"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_SERVED_SUFFIXES = (".html", ".css", ".js", ".png", ".svg")
# index.html names the other files without a version in their URL: a browser revalidates
# (If-None-Match, 304) instead of keeping a stale app.js after an upgrade.
_CACHE_CONTROL = "no-cache"


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: str
    """Its URL path, e.g. ``/views/calls.js``."""
    content_type: str
    body: bytes
    gzipped: bytes
    etag: str


@dataclass(frozen=True, slots=True)
class PageResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


def load_files() -> dict[str, StaticFile]:
    """Every servable file of ``calllog/web/`` by URL path (``/`` is ``index.html``)."""
    root = resources.files("otel_llm.calllog") / "web"
    files: dict[str, StaticFile] = {}
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((entry, f"{prefix}/{entry.name}"))
                continue
            suffix = "." + entry.name.rpartition(".")[2]
            if suffix not in _SERVED_SUFFIXES:
                continue  # the vendor README and licence are for people reading the source
            body = entry.read_bytes()
            path = f"{prefix}/{entry.name}"
            files[path] = StaticFile(
                path,
                _TYPES[suffix],
                body,
                gzip.compress(body, compresslevel=9, mtime=0),
                '"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            )
    files["/"] = files["/index.html"]
    return files


class WebPage:
    """Answers the page's requests: ``answer`` returns None for a path of the API."""

    def __init__(self, trace_url: str | None = None):
        self.files = load_files()
        config = json.dumps({"trace_url": trace_url}).encode()
        self.config = StaticFile(
            CONFIG_PATH,
            _TYPES[".json"],
            config,
            gzip.compress(config, mtime=0),
            '"' + hashlib.sha256(config).hexdigest()[:32] + '"',
        )

    def answer(
        self, method: str, target: str, header: Callable[[str], str | None]
    ) -> PageResponse | None:
        """The response to a request for the page, or None when ``target`` is the API's."""
        path = urlsplit(target).path
        if path == "/api" or path.startswith("/api/"):
            return None
        if method not in ("GET", "HEAD"):
            return _plain(405, f"{method} is not allowed here; allowed: GET, HEAD\n", "GET, HEAD")
        found = self.config if path == CONFIG_PATH else self.files.get(path)
        if found is None:
            # Said without echoing the path: nothing of the request is reflected into a page.
            shown = "an encoded path" if unquote(path) != path else "this path"
            return _plain(404, f"not found: {shown} is not a file of the page\n")
        return _file(found, header)


def _file(found: StaticFile, header: Callable[[str], str | None]) -> PageResponse:
    headers = [
        *SECURITY_HEADERS,
        ("Content-Type", found.content_type),
        ("Cache-Control", "no-store" if found.path == CONFIG_PATH else _CACHE_CONTROL),
        ("ETag", found.etag),
        ("Vary", "Accept-Encoding"),
    ]
    if _matches(header("If-None-Match"), found.etag):
        return PageResponse(304, b"", tuple(headers))
    if _accepts_gzip(header("Accept-Encoding")):
        headers.append(("Content-Encoding", "gzip"))
        return PageResponse(200, found.gzipped, tuple(headers))
    return PageResponse(200, found.body, tuple(headers))


def _plain(status: int, text: str, allow: str | None = None) -> PageResponse:
    headers = [
        *SECURITY_HEADERS,
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Cache-Control", "no-store"),
    ]
    if allow is not None:
        headers.append(("Allow", allow))
    return PageResponse(status, text.encode(), tuple(headers))


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _accepts_gzip(accept_encoding: str | None) -> bool:
    for coding in (accept_encoding or "").lower().split(","):
        name, _, parameters = coding.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            quality = _quality(parameters)
            return quality is None or quality > 0
    return False


def _quality(parameters: str) -> float | None:
    for parameter in parameters.split(";"):
        key, _, value = parameter.strip().partition("=")
        if key.strip() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return None
