"""What a setting is: ``Setting`` (argument > environment > config file > default), the
``Configured`` base of the config objects built from settings, and the value checks and parsers
the settings use. The settings themselves are declared in ``otel_llm.settings``.

The foundation layer: this module imports nothing of otel-llm but the semantic-convention names.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar, cast
from urllib.parse import unquote

from otel_llm import _semconv as sc

# The warnings keep the name users know (and filter): the settings' module.
_logger = logging.getLogger("otel_llm.settings")

T = TypeVar("T")

PREFIX = "OTEL_LLM_"
"""Every setting's environment variable is this prefix + its name in capitals."""

OFF = "none"
"""The value that turns off what a setting describes (a listener, the call log, its API). The
endpoint settings resolve it to None, so the rest of the package tests ``is None``;
``call_log_store`` keeps it as text (other readers take it as a path): see ``is_off``."""


class Setting(Generic[T]):
    """One setting: its keyword name, environment variable, default and validation."""

    __slots__ = ("_default", "_factory", "check", "doc", "env", "fallback_env", "name", "parse")

    def __init__(
        self,
        name: str,
        *,
        parse: Callable[[str], T],
        check: Callable[[Any], T],
        doc: str,
        default: T | None = None,
        default_factory: Callable[[], T] | None = None,
        fallback_env: str | None = None,
    ):
        self.name = name
        self.env = PREFIX + name.upper()
        self.parse = parse
        """Turns the environment variable's text into a value; raises ValueError when it cannot."""
        self.check = check
        """Validates a given (or parsed) value; raises ValueError/TypeError if it is bad."""
        self.doc = doc
        self.fallback_env = fallback_env
        """A standard variable read when ``env`` is not set (e.g. the GenAI content-capture one)."""
        self._default = default
        self._factory = default_factory

    @property
    def default(self) -> T:
        """The value when nothing sets it; a ``default_factory`` is called on each read (a path
        under ``$XDG_STATE_HOME`` follows the environment of the moment, not of the import)."""
        return self._factory() if self._factory is not None else cast(T, self._default)

    def __repr__(self) -> str:
        return f"Setting({self.name!r})"

    def resolve(
        self,
        argument: Any = None,
        environ: Mapping[str, str] | None = None,
        file: Mapping[str, Any] | None = None,
    ) -> T:
        """The value in force: the argument if given and valid, else the environment, else the
        config file's value (``file``: setting name -> value), else the default."""
        if argument is not None:
            try:
                return self.check(argument)
            except (TypeError, ValueError) as exc:
                _logger.warning("otel-llm: ignoring %s=%r (%s)", self.name, argument, exc)
        environ = os.environ if environ is None else environ
        for env in (self.env, self.fallback_env):
            raw = environ.get(env) if env is not None else None
            if raw is not None and raw.strip() != "":
                try:
                    return self.check(self.parse(raw.strip()))
                except (TypeError, ValueError) as exc:
                    default = self.default
                    _logger.warning(
                        "otel-llm: ignoring %s=%r (%s); using %r", env, raw, exc, default
                    )
                    return default
        if file is not None and file.get(self.name) is not None:
            return self._from_file(file[self.name])
        return self.default

    def _from_file(self, value: Any) -> T:
        if isinstance(value, str):
            # Text goes through the same parser as the environment's ("256MiB", "k=v,k2=v2").
            try:
                value = self.parse(value)
            except (TypeError, ValueError) as exc:
                default = self.default
                _logger.warning(
                    "otel-llm: ignoring %s=%r in the config file (%s); using %r",
                    self.name,
                    value,
                    exc,
                    default,
                )
                return default
        return self.resolve(value, {})


# --- Config objects --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Binding:
    """A config field filled from a setting, and the command-line flag that sets it, if any."""

    field: str
    setting: Setting[Any]
    flag: str | None = None
    metavar: str | None = None


_BINDING = "otel_llm.setting"


def bound(setting: Setting[Any], flag: str | None = None, metavar: str | None = None) -> Any:
    """A field of a ``Configured`` dataclass whose value ``from_settings`` takes from
    ``setting``; ``flag`` is its option of the command that runs the service (a flag without a
    ``metavar`` is a switch: given alone, it means true)."""
    return dataclasses.field(metadata={_BINDING: (setting, flag, metavar)})


class Configured:
    """Base of the frozen config dataclasses: ``from_settings`` resolves each bound field's
    setting once (argument > environment > config file > default)."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @classmethod
    def bindings(cls) -> tuple[Binding, ...]:
        """The fields bound to a setting, in declaration order."""
        return tuple(
            Binding(field.name, *field.metadata[_BINDING])
            for field in dataclasses.fields(cls)
            if _BINDING in field.metadata
        )

    @classmethod
    def from_settings(
        cls,
        *,
        file: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Self:
        """The config with every bound field resolved: ``overrides`` (by field name; None:
        not given) > ``environ`` (default ``os.environ``) > ``file`` (by setting name) >
        default. Fields without a setting take their override or their default."""
        values = dict(overrides)
        for binding in cls.bindings():
            given = values.pop(binding.field, None)
            values[binding.field] = binding.setting.resolve(given, environ, file)
        return cls(**values)


# --- Value checks and parsers ----------------------------------------------------------------


def int_at_least(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        return value

    return check


def optional_port(value: Any) -> int | None:
    port = int_at_least(0)(value)
    if port > 65535:
        raise ValueError("must be a TCP port (0-65535)")
    return port or None  # 0 means "off", as an explicit way to override the environment


def non_empty_text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def optional_text(value: Any) -> str | None:
    return non_empty_text(value)


def path_text(value: Any) -> str:
    """A path, given as text or as a ``pathlib.Path``."""
    return non_empty_text(os.fspath(value) if isinstance(value, os.PathLike) else value)


def is_off(value: Any) -> bool:
    """Whether ``value`` is ``none`` (any case, spaces around): what turns a thing off."""
    return isinstance(value, str) and value.strip().lower() == OFF


def or_off(check: Callable[[Any], T]) -> Callable[[Any], T | None]:
    """``check``, except that ``none`` is the value None: the thing is off."""

    def checked(value: Any) -> T | None:
        if is_off(value):
            return None
        return check(value)

    return checked


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError("expected true or false")


def parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


# Label parsing lives here, not in otel_llm.metrics: the settings are the foundation layer and
# import nothing above it.
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = {*sc.STANDARD_LABELS, sc.TOKEN_TYPE_LABEL, sc.REASON_LABEL, "le", "trace_id"}


def label_name_for(attribute: str) -> str:
    """The label name Prometheus' translation gives an attribute (non-alphanumerics -> ``_``)."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", attribute)
    return f"_{name}" if name[:1].isdigit() else name


def parse_extra_labels(value: Any) -> dict[str, str]:
    """``{label: attribute}`` from a mapping or from a list of attribute names.

    Raises ValueError/TypeError with the reason when a name is unusable.
    """
    if isinstance(value, Mapping):
        pairs: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
        pairs = (("", attribute) for attribute in value)
    else:
        raise TypeError("expected a mapping of label -> attribute or a list of attributes")
    result: dict[str, str] = {}
    for given, attribute in pairs:
        if not isinstance(attribute, str) or not attribute or not isinstance(given, str):
            raise TypeError(f"bad extra label {given!r} -> {attribute!r}")
        label = given or label_name_for(attribute)
        if not _LABEL_NAME.match(label) or label.startswith("__"):
            raise ValueError(f"{label!r} is not a valid Prometheus label name")
        if label in _RESERVED_LABELS:
            raise ValueError(f"{label!r} is a label otel-llm sets itself")
        result[label] = attribute
    return result


def parse_name_list(raw: str) -> tuple[str, ...]:
    """``a,b,c`` (spaces around a name ignored)."""
    return name_list([entry.strip() for entry in raw.split(",") if entry.strip()])


def name_list(value: Any) -> tuple[str, ...]:
    """A list of non-empty names without spaces."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError("expected a list of names")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name.strip()):
            raise ValueError(f"bad name {name!r}: expected a non-empty name without spaces")
    return tuple(name.strip() for name in names)


def parse_extra_labels_text(raw: str) -> dict[str, str]:
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    mapping: dict[str, str] = {}
    for entry in entries:
        label, sep, attribute = entry.partition("=")
        mapping[label.strip() if sep else ""] = (attribute if sep else label).strip()
    return parse_extra_labels(mapping)


def _address(value: Any) -> str:
    """``host:port`` (port 0: any free one; ``[::1]:4317`` for IPv6)."""
    text = non_empty_text(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port or none, got {text!r}")
    return text


endpoint = or_off(_address)
"""An address to listen on, or None: ``none`` turns the listener off."""


def choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return str(value)

    return check


def header_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError("expected a mapping of header name -> value")
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not name.strip() or not isinstance(text, str):
            raise TypeError(f"bad header {name!r}: {text!r}")
        headers[name.strip().lower()] = text
    return headers


def parse_headers(raw: str) -> dict[str, str]:
    """``k=v,k2=v2`` with URL-encoded values, as OTEL_EXPORTER_OTLP_HEADERS."""
    headers: dict[str, str] = {}
    for entry in raw.split(","):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected name=value, got {entry.strip()!r}")
        headers[unquote(name.strip())] = unquote(value.strip())
    return header_map(headers)


def positive_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number of seconds, got {type(value).__name__}")
    if not 0 < value < float("inf"):
        raise ValueError("must be a number of seconds > 0")
    return float(value)


_SIZE_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 1000}
_SIZE_UNITS.update({"mb": 1000**2, "gb": 1000**3, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30})


def parse_size(raw: str) -> int:
    """Bytes: ``4194304``, ``4MiB``, ``256 MiB`` (KiB/MiB/GiB binary, kB/MB/GB decimal)."""
    text = raw.strip().lower()
    number = text.rstrip("kmgib ")
    unit = text[len(number) :].strip()
    if unit not in _SIZE_UNITS or not number.isdigit():
        raise ValueError(f"expected a size like 4194304 or 256MiB, got {raw!r}")
    return int(number) * _SIZE_UNITS[unit]


def byte_size(value: Any) -> int:
    return int_at_least(1024)(parse_size(value) if isinstance(value, str) else value)


def seconds_or_off(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number of seconds, got {type(value).__name__}")
    if not 0 <= value < float("inf"):
        raise ValueError("must be a number of seconds >= 0")
    return float(value)
