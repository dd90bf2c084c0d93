"""``otel-llm demo``: its arguments. The demo itself is imported when the command runs."""

from __future__ import annotations

import argparse
from typing import Any

from otel_llm._cli_types import host, int_between, seconds


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``demo`` on the ``otel-llm`` subparsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        help="simulate LLM calls (no network, no API key), price them, serve their metrics",
        description=(
            "Run simulated LLM calls of several providers through LLMSpanProcessor -- no "
            "network, no API key -- and print what they cost. With --port, also serve their "
            "Prometheus metrics (with trace-id exemplars) on /metrics."
        ),
    )
    parser.add_argument(
        "--calls",
        type=int_between(1, 10_000),
        default=40,
        metavar="N",
        help="number of calls to simulate (default: 40)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="N",
        help="random seed: the same seed gives the same calls and costs (default: 1)",
    )
    parser.add_argument(
        "--port",
        type=int_between(0, 65535),
        default=None,
        metavar="P",
        help="serve /metrics on this port (0: any free port); default: no server",
    )
    parser.add_argument(
        "--host",
        type=host,
        default="127.0.0.1",
        metavar="H",
        help="address /metrics binds (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--serve-seconds",
        type=seconds,
        default=None,
        metavar="S",
        help="with --port: serve this long, then exit (default: until Ctrl-C)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=_run, check=_check, command_parser=parser)
    return parser


def _check(args: argparse.Namespace) -> None:
    """What argparse cannot check flag by flag; exits 2 with a usage message, as argparse does."""
    if args.serve_seconds is not None and args.port is None:
        args.command_parser.error("--serve-seconds needs --port")


def _run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the demo loads the SDK pipeline and the price data, and
    # every other `otel-llm` command (and --version) needs none of it.
    from otel_llm.demo.command import run  # noqa: PLC0415

    return run(
        calls=args.calls,
        seed=args.seed,
        port=args.port,
        host=args.host,
        serve_seconds=args.serve_seconds,
        json_output=args.json,
    )
