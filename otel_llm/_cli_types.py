"""Argument types and the error type shared by the ``otel-llm`` subcommands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


class CommandError(Exception):
    """A failure the user can act on (a port in use, a bad file); shown without a traceback."""


def int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected an address, e.g. 127.0.0.1 or 0.0.0.0")
    return text.strip()
