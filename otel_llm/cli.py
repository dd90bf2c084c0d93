"""The ``otel-llm`` command line: parses arguments and hands each subcommand to its module.

User mistakes end with a one-line message and a non-zero exit code, never a traceback: 2 for
bad arguments (argparse's convention), 1 when a command cannot do its job.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from otel_llm._cli_types import CommandError
from otel_llm._version import __version__
from otel_llm.calllog import cli as calls_cli
from otel_llm.calllog.config import COLLECTOR_COMPANION
from otel_llm.collector import cli as collector_cli
from otel_llm.demo import cli as demo_cli
from otel_llm.policies import cli as policies_cli

PROG = "otel-llm"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        # What a subcommand's flags mean together (argparse checks each alone): exits 2 too.
        check: Callable[[argparse.Namespace], None] | None = getattr(args, "check", None)
        if check is not None:
            check(args)
    except SystemExit as exc:  # --help, --version and argument errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CommandError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `otel-llm demo | head`: the reader left, nothing else is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Every LLM call in a traced application visible, priced and alertable.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # Each subcommand is defined next to what it runs; those modules import nothing heavy at
    # the top, so `otel-llm --version` stays fast.
    demo_cli.add_parser(commands)
    collector_cli.add_parser(commands, COLLECTOR_COMPANION)  # the call log runs beside it
    calls_cli.add_parser(commands)
    policies_cli.add_parser(commands)
    return parser
