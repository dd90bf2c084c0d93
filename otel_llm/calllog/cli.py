"""Placeholder: the subcommand is being written."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> argparse.ArgumentParser | None:
    return None
