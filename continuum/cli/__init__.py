"""``continuum``: one command, a module per command group. Flags override environment variables;
each flag's help names its variable. Commands whose actions take different flags have nested
actions (``continuum thresholds set MODEL name=value``). Heavy packages are imported only by the
handler that needs them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from continuum.cli import broker, events, history, models, offline, services, thresholds, traffic
from continuum.cli.common import settings_from

GROUPS = (broker, events, traffic, services, history, offline, thresholds, models)

# Commands that do not connect to the configured Kafka (the demo runs its own local broker).
OFFLINE = frozenset({"broker", "demo", "evaluate", "baseline"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="continuum",
        description="Continuum: event-driven continuous improvement for LLM products on Kafka.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from(args)
        if args.command not in OFFLINE:
            from continuum import kafka

            kafka.preflight(settings.kafka)  # bad credentials or TLS: one line, exit 1
        return int(args.handler(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error for the operator; -v for the traceback
        if args.verbose:
            raise
        print(f"continuum {args.command}: error: {exc}", file=sys.stderr)
        return 1
