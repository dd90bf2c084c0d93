"""The ``otel-llm`` command line: parses arguments and hands each subcommand to its module.

User mistakes end with a one-line message and a non-zero exit code, never a traceback: 2 for
bad arguments (argparse's convention), 1 when a command cannot do its job.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from otel_llm._cli_types import CommandError, host, int_between, seconds
from otel_llm._version import __version__
from otel_llm.calllog import cli as calls_cli
from otel_llm.calllog.config import COLLECTOR_COMPANION
from otel_llm.collector import cli as collector_cli

PROG = "otel-llm"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "demo" and args.serve_seconds is not None and args.port is None:
            args.command_parser.error("--serve-seconds needs --port")
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

    demo = commands.add_parser(
        "demo",
        help="simulate LLM calls (no network, no API key), price them, serve their metrics",
        description=(
            "Run simulated LLM calls of several providers through LLMSpanProcessor -- no "
            "network, no API key -- and print what they cost. With --port, also serve their "
            "Prometheus metrics (with trace-id exemplars) on /metrics."
        ),
    )
    demo.add_argument(
        "--calls",
        type=int_between(1, 10_000),
        default=40,
        metavar="N",
        help="number of calls to simulate (default: 40)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="N",
        help="random seed: the same seed gives the same calls and costs (default: 1)",
    )
    demo.add_argument(
        "--port",
        type=int_between(0, 65535),
        default=None,
        metavar="P",
        help="serve /metrics on this port (0: any free port); default: no server",
    )
    demo.add_argument(
        "--host",
        type=host,
        default="127.0.0.1",
        metavar="H",
        help="address /metrics binds (default: 127.0.0.1)",
    )
    demo.add_argument(
        "--serve-seconds",
        type=seconds,
        default=None,
        metavar="S",
        help="with --port: serve this long, then exit (default: until Ctrl-C)",
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(handler=_demo, command_parser=demo)
    # Each service's subcommand is defined next to the service; those modules import nothing
    # heavy at the top, so `otel-llm --version` stays fast.
    collector_cli.add_parser(commands, COLLECTOR_COMPANION)  # the call log runs beside it
    calls_cli.add_parser(commands)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from otel_llm import demo  # noqa: PLC0415 - `otel-llm --version` needs none of it

    return demo.run(
        calls=args.calls,
        seed=args.seed,
        port=args.port,
        host=args.host,
        serve_seconds=args.serve_seconds,
        json_output=args.json,
    )
