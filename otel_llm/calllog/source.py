"""Where ``otel-llm calls`` reads from: a store opened here, or a running query API.

Both answer with the API's JSON (money as numbers, datetimes as ISO strings), and a store's
requests go through the API's own parameter parsing, so the same flags give the same answer --
and the same message for a mistake -- from either source.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from otel_llm import settings
from otel_llm._cli_types import CommandError
from otel_llm.calllog import params, traces
from otel_llm.calllog.app import PREFIX, TRACES_PREFIX, jsonable, list_answer
from otel_llm.calllog.policyapi import POLICIES_PREFIX
from otel_llm.calllog.query import QueryError
from otel_llm.calllog.store import SQLCallStore, open_store


class CallSource:
    """A store opened here, or a running API; answers as the API's JSON would."""

    def __init__(
        self, *, store: str | None = None, api: str | None = None, api_key: str | None = None
    ):
        self._api = api
        self._key = ""
        self._store: Any = None
        if api is not None:
            if store is not None:
                raise CommandError("give --store or --api, not both")
            self._key = api_key or settings.CALL_LOG_CLIENT_KEY.resolve() or ""
            if not self._key:
                raise CommandError("--api needs --api-key KEY (or OTEL_LLM_CALL_LOG_CLIENT_KEY)")
        else:
            self._store = open_existing(store)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> CallSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ask(self, path: str, query: Mapping[str, str]) -> Any:
        """The JSON answer of ``GET /api/v1/calls<path>?<query>`` (path: "", /count, /stats)."""
        if self._api is not None:
            return _fetch(self._api, self._key, path, query)
        return self._from_store(path, query)

    def policies(self, query: Mapping[str, str]) -> Any:
        """The JSON answer of ``GET /api/v1/policies`` (a running API only: the states are
        the collector's)."""
        if self._api is None:
            raise ValueError("the policies' states come from a running API")
        return _fetch(self._api, self._key, "", query, POLICIES_PREFIX)

    def call(self, call_id: str, *, details: bool = False) -> Any:
        """The JSON answer of ``GET /api/v1/calls/{id}`` (or ``.../details``)."""
        if self._api is not None:
            path = "/" + urllib.parse.quote(call_id, safe="") + ("/details" if details else "")
            return _fetch(self._api, self._key, path, {})
        found = self._store.details(call_id) if details else self._store.get(call_id)
        if found is None:
            raise CommandError(f"no call with id {call_id!r}")
        return jsonable(found)

    def traces(self, query: Mapping[str, str]) -> Any:
        """The JSON answer of ``GET /api/v1/traces?<query>``."""
        if self._api is not None:
            return _fetch(self._api, self._key, "", query, prefix=TRACES_PREFIX)
        try:
            wanted = traces.parse_traces({name: [value] for name, value in query.items()})
        except params.ParamError as exc:
            raise CommandError(as_flags(str(exc))) from None
        return jsonable(self._store.traces(wanted))

    def trace(self, trace_id: str) -> Any:
        """The JSON answer of ``GET /api/v1/traces/{trace_id}``."""
        if not traces.is_trace_id(trace_id):
            raise CommandError(f"a trace id is 32 hex digits, got {trace_id!r}")
        if self._api is not None:
            return _fetch(self._api, self._key, "/" + trace_id, {}, prefix=TRACES_PREFIX)
        found = self._store.trace(trace_id)
        if found is None:
            raise CommandError(f"no trace with id {trace_id!r} has LLM calls in the call log")
        return jsonable(found)

    def _from_store(self, path: str, query: Mapping[str, str]) -> Any:
        given = {name: [value] for name, value in query.items()}
        store = self._store
        try:
            if path == "":
                wanted = params.parse_list(given)
                return jsonable(list_answer(wanted, store.list(wanted)))
            if path == "/count":
                return {"count": store.count(params.parse_count(given))}
            if path == "/stats":
                return jsonable(store.stats(params.parse_stats(given)))
        except (params.ParamError, QueryError) as exc:
            raise CommandError(as_flags(str(exc))) from None
        raise ValueError(f"not a collection path: {path!r}")


def open_existing(store: str | None) -> SQLCallStore:
    """The store at ``store`` (default: the call_log_store setting), which must exist."""
    url = store or settings.CALL_LOG_STORE.resolve()
    if not url.startswith(("postgresql://", "postgres://")):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            # Opening would create an empty store; a reader wants to hear the path is wrong.
            raise CommandError(
                f"no call log at {path} (give --store PATH or set OTEL_LLM_CALL_LOG_STORE)"
            )
    try:
        return open_store(url)
    # A wrong URL, an unreachable server, a newer schema: the drivers' own error types
    # (sqlite3, psycopg), which this module does not import.
    except Exception as exc:  # noqa: BLE001
        raise CommandError(f"cannot open the call log {url}: {exc}") from None


def _fetch(base: str, key: str, path: str, query: Mapping[str, str], prefix: str = PREFIX) -> Any:
    root = base.rstrip("/").removesuffix(PREFIX).removesuffix(prefix)
    if not root.startswith(("http://", "https://")):
        raise CommandError(f"--api must be an http:// or https:// URL, got {base!r}")
    url = f"{root}{prefix}{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, headers={"Authorization": f"Bearer {key}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise CommandError(f"the API answered {exc.code}: {as_flags(_api_message(exc))}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach the call-log API at {root}: {reason}") from None
    except ValueError:
        raise CommandError(f"the API at {root} did not answer JSON") from None


def as_flags(message: str) -> str:
    """An API message in the command line's words: ``parameter 'start_date'`` -> ``--since``."""

    def flag(match: re.Match[str]) -> str:
        name = match[1]
        return _FLAGS.get(name, "--" + name.replace("_", "-"))

    return re.sub(r"parameter '([a-z_]+)'", flag, message)


_FLAGS = {"start_date": "--since", "end_date": "--until", "group_by": "--group-by"}


def _api_message(error: Any) -> str:
    try:
        return str(json.loads(error.read())["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return str(error.reason)
