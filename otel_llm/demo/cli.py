"""``otel-llm demo``: its arguments. The demo itself is imported when the command runs."""

from __future__ import annotations

import argparse
from typing import Any

from otel_llm._cli_types import host, int_between, seconds

SERVE_CALLS = 3000
"""``demo --serve``'s calls over its 30 days: a dashboard's worth, fed in a few seconds."""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``demo`` on the ``otel-llm`` subparsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        help="simulate LLM calls (no network, no API key), price them, serve their metrics",
        description=(
            "Run simulated LLM calls of several providers through LLMSpanProcessor -- no "
            "network, no API key -- and print what they cost. With --port, also serve their "
            "Prometheus metrics (with trace-id exemplars) on /metrics. With --serve, start a "
            "collector with the call log and its page instead, feed it a month of simulated "
            "traffic over OTLP, print the page's URL and an API key, and run until Ctrl-C."
        ),
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help=(
            "start a collector with the call log, its API and page on --host (a free port, "
            "or --port), fed 30 days of simulated traffic; run until Ctrl-C"
        ),
    )
    parser.add_argument(
        "--calls",
        type=int_between(1, 10_000),
        default=None,
        metavar="N",
        help=f"number of calls to simulate (default: 40; {SERVE_CALLS} with --serve)",
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
        help=(
            "serve /metrics on this port (0: any free port); default: no server. With "
            "--serve: the page's and API's port (default: a free one)"
        ),
    )
    parser.add_argument(
        "--host",
        type=host,
        default="127.0.0.1",
        metavar="H",
        help="address the servers bind (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--call-log-store",
        default=None,
        metavar="PATH_OR_URL",
        help=(
            "with --serve: keep the call log in this SQLite file (or PostgreSQL URL) "
            "instead of a temporary one removed on exit"
        ),
    )
    parser.add_argument(
        "--serve-seconds",
        type=seconds,
        default=None,
        metavar="S",
        help="with --port or --serve: serve this long, then exit (default: until Ctrl-C)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=_run, check=_check, command_parser=parser)
    return parser


def _check(args: argparse.Namespace) -> None:
    """What argparse cannot check flag by flag; exits 2 with a usage message, as argparse does."""
    if args.serve:
        if args.json:
            args.command_parser.error("--json prints a summary: it does not go with --serve")
        return
    if args.serve_seconds is not None and args.port is None:
        args.command_parser.error("--serve-seconds needs --port or --serve")
    if args.call_log_store is not None:
        args.command_parser.error("--call-log-store needs --serve")


def _run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the demo loads the SDK pipeline and the price data, and
    # every other `otel-llm` command (and --version) needs none of it.
    if args.serve:
        from otel_llm.demo.serve import serve  # noqa: PLC0415

        return serve(
            calls=args.calls if args.calls is not None else SERVE_CALLS,
            seed=args.seed,
            host=args.host,
            port=args.port if args.port is not None else 0,
            store=args.call_log_store,
            serve_seconds=args.serve_seconds,
        )
    from otel_llm.demo.command import run  # noqa: PLC0415

    return run(
        calls=args.calls if args.calls is not None else 40,
        seed=args.seed,
        port=args.port,
        host=args.host,
        serve_seconds=args.serve_seconds,
        json_output=args.json,
    )
