"""Who may read the call log: API keys the operator configures, each allowed all projects or a
list of them.

A key file (YAML or JSON) lists the keys; storing only their SHA-256 is preferred (the file then
holds no secret), a plain key is accepted too and hashed on load::

    keys:
      - name: dashboards
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      - name: team-search
        key: s3cr3t-search-key           # plain: hashed when the file is read
        projects: [search, search-eval]  # this key sees only these projects' calls

A request carries its key as ``Authorization: Bearer <key>`` or an ``ApiKey: <key>`` header.
The presented key is hashed and compared with every configured digest in constant time, so
neither the comparison nor which key matched leaks through timing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_llm import settings
from otel_llm.calllog.cardinality import OTHER
from otel_llm.calllog.query import CallFilter

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class AuthError(Exception):
    """A request refused for who sent it: 401 (no or unknown key) or 403 (not allowed)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def hash_key(key: str) -> str:
    """The SHA-256 (hex) of a key, as a key file stores it."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return "ollm_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key: its name (shown in logs and errors, never the key), the SHA-256 of
    the key, and the projects it may read (None: all)."""

    name: str
    digest: bytes = field(repr=False)
    projects: frozenset[str] | None = None

    @classmethod
    def plain(cls, name: str, key: str, projects: Iterable[str] | None = None) -> ApiKey:
        """A key given in clear (e.g. in a test or an environment variable)."""
        return cls(name, hashlib.sha256(key.encode()).digest(), _projects(projects))

    def allows(self, project: str) -> bool:
        return self.projects is None or project in self.projects

    def restrict(self, wanted: CallFilter) -> CallFilter:
        """The filter this key may run: a project it is not allowed is refused (403); a key
        limited to projects only ever sees those projects' calls."""
        if self.projects is None:
            return wanted
        asked = (wanted.project,) if isinstance(wanted.project, str) else wanted.project or ()
        for project in asked:
            if not self.allows(project):
                raise AuthError(
                    403, f"API key '{self.name}' is not allowed to read project '{project}'"
                )
        return dataclasses.replace(wanted, projects=self.projects)


class KeyRing:
    """The configured keys; identifies the key a request presents."""

    def __init__(self, keys: Iterable[ApiKey] = ()):
        self._keys = tuple(keys)
        names = [key.name for key in self._keys]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"API key names must be unique; repeated: {', '.join(duplicates)}")
        digests = [key.digest for key in self._keys]
        if len(set(digests)) != len(digests):
            raise ValueError("two API keys have the same key")

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[ApiKey]:
        return iter(self._keys)

    def __add__(self, other: KeyRing) -> KeyRing:
        return KeyRing((*self._keys, *other._keys))

    @classmethod
    def load(cls, path: str | Path) -> KeyRing:
        """Keys from a YAML or JSON file; ValueError (naming the file) when it is unusable."""
        import yaml  # noqa: PLC0415 - only a server with a key file needs it

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except OSError as exc:
            raise ValueError(f"cannot read the API key file {path}: {exc.strerror}") from None
        except (ValueError, yaml.YAMLError) as exc:
            raise ValueError(f"the API key file {path} is not valid: {exc}") from None
        return cls.parse(data, origin=str(path))

    @classmethod
    def parse(cls, data: Any, origin: str = "API keys") -> KeyRing:
        """Keys from parsed YAML/JSON: ``{"keys": [...]}`` or the list itself."""
        entries = data.get("keys") if isinstance(data, dict) else data
        if isinstance(data, dict) and set(data) - {"keys"}:
            raise ValueError(f"{origin}: unknown top-level keys {sorted(set(data) - {'keys'})}")
        if not isinstance(entries, list):
            raise ValueError(f"{origin}: expected a list of keys under 'keys'")
        return cls(_entry(entry, f"{origin}: keys[{index}]") for index, entry in enumerate(entries))

    @classmethod
    def inline(cls, text: str) -> KeyRing:
        """Keys from a setting: ``name=key,name2=sha256:<hex>``; each may read every project."""
        keys = []
        for entry in text.split(","):
            if not entry.strip():
                continue
            name, sep, secret = entry.strip().partition("=")
            if not sep or not name.strip() or not secret.strip():
                raise ValueError(f"expected name=key or name=sha256:<hex>, got {entry.strip()!r}")
            secret = secret.strip()
            if secret.startswith("sha256:"):
                keys.append(ApiKey(name.strip(), _digest(secret[7:], name.strip())))
            else:
                keys.append(ApiKey.plain(name.strip(), secret))
        return cls(keys)

    @classmethod
    def from_settings(cls, keys_file: str | None = None, keys: str | None = None) -> KeyRing:
        """The keys of the ``call_log_api_keys_file`` and ``call_log_api_keys`` settings (the
        arguments override them); ValueError when a file or entry is unusable."""
        path = settings.CALL_LOG_API_KEYS_FILE.resolve(keys_file)
        inline = settings.CALL_LOG_API_KEYS.resolve(keys)
        ring = cls.load(path) if path else cls()
        return ring + cls.inline(inline) if inline else ring

    def identify(self, header: Callable[[str], str | None]) -> ApiKey:
        """The key a request presents (``header(name)`` reads a request header), or AuthError
        401."""
        key = _presented(header)
        presented = hashlib.sha256(key.encode()).digest()
        found: ApiKey | None = None
        for candidate in self._keys:
            # Every digest is compared, so how long this takes says nothing about which matched.
            if hmac.compare_digest(candidate.digest, presented):
                found = candidate
        if found is None:
            raise AuthError(401, "unknown API key")
        return found


def _presented(header: Callable[[str], str | None]) -> str:
    authorization = header("Authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise AuthError(401, "the Authorization header must be 'Bearer <API key>'")
        return credentials.strip()
    api_key = header("ApiKey")
    if api_key is not None and api_key.strip():
        return api_key.strip()
    raise AuthError(
        401, "an API key is required: send 'Authorization: Bearer <key>' or an 'ApiKey' header"
    )


def _entry(entry: Any, where: str) -> ApiKey:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping with name and key or sha256")
    unknown = set(entry) - {"name", "key", "sha256", "projects"}
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: 'name' must be a non-empty string")
    if ("key" in entry) == ("sha256" in entry):
        raise ValueError(f"{where} ({name}): give exactly one of 'key' and 'sha256'")
    try:
        projects = _projects(entry.get("projects"))
    except ValueError as exc:
        raise ValueError(f"{where} ({name}): {exc}") from None
    if "key" in entry:
        key = entry["key"]
        if not isinstance(key, str) or len(key.strip()) < 8:
            raise ValueError(f"{where} ({name}): 'key' must be a string of at least 8 characters")
        return ApiKey.plain(name.strip(), key.strip(), projects)
    return ApiKey(name.strip(), _digest(entry["sha256"], f"{where} ({name})"), projects)


def _digest(text: Any, where: str) -> bytes:
    if not isinstance(text, str) or not _HEX_DIGEST.fullmatch(text.strip().lower()):
        raise ValueError(f"{where}: 'sha256' must be 64 hex digits (see `otel-llm calls keygen`)")
    return bytes.fromhex(text.strip())


def _projects(projects: Any) -> frozenset[str] | None:
    if projects is None or projects in ("*", ["*"]):
        return None
    if isinstance(projects, str):
        projects = [projects]
    if not isinstance(projects, list | tuple | set | frozenset) or not projects:
        raise ValueError("'projects' must be a non-empty list of project names, or '*' for all")
    if not all(isinstance(project, str) and project for project in projects):
        raise ValueError("'projects' must list non-empty strings")
    if OTHER in projects:
        # Found in review: the daily rows of the projects folded past the cap are named so,
        # and the key's stats would have summed them.
        raise ValueError(
            f"'projects' cannot list '{OTHER}': the daily aggregates name the projects past "
            "their cap so, and stats of the key would count those projects' calls"
        )
    return frozenset(projects)
