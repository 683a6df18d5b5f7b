"""``continuum emit`` (events from JSON lines) and ``continuum experiments`` (the compacted
experiments topic)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from continuum.cli.common import Actions, Commands, command
from continuum.settings import Settings


def emit(args: argparse.Namespace, settings: Settings) -> int:
    from producers.jsonlines import LineEmitter
    from producers.producer import EventProducer

    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    rejects = open(args.rejects, "w", encoding="utf-8") if args.rejects else None  # noqa: SIM115
    bad = 0
    try:
        with EventProducer.from_settings(settings) as producer:
            emitter = LineEmitter(producer.send, args.type)
            for rejected in emitter.emit(stream):
                bad += 1
                print(f"{args.file}:{rejected.line}: {rejected.error}", file=sys.stderr)
                if rejects:
                    rejects.write(rejected.json() + "\n")
    finally:
        if rejects:
            rejects.close()
        if stream is not sys.stdin:
            stream.close()
    print(f"sent {emitter.sent} event(s), rejected {bad}")
    return 2 if bad else 0


STATUS = {"create": "RUNNING", "stop": "STOPPED", "conclude": "CONCLUDED"}


def experiments(args: argparse.Namespace, settings: Settings) -> int:
    """Create, stop or conclude an A/B experiment on the compacted experiments topic."""
    from producers.assignment import STRATEGIES
    from producers.experiments import experiment_event
    from producers.producer import EventProducer

    missing = [f for f in ("control", "treatment") if not getattr(args, f)]
    if missing:
        raise ValueError(f"experiments {args.action} needs --{' and --'.join(missing)}")
    if args.strategy.upper() not in STRATEGIES:
        raise ValueError(
            f"--strategy must be one of {', '.join(STRATEGIES)}, got {args.strategy!r}"
        )
    split, strategy, metadata = args.split, args.strategy, {}
    if getattr(args, "rollout", None):
        from streams.logic.rollout import parse_schedule, rollout_metadata

        metadata = rollout_metadata(
            args.rollout, step_s=args.rollout_step_s, now_ms=int(time.time() * 1000)
        )
        split, strategy = parse_schedule(args.rollout)[0], "WEIGHT_BASED"
    event = experiment_event(
        args.experiment_id,
        args.control,
        args.treatment,
        split_percent=split,
        strategy=strategy,
        metadata=metadata,
        status=STATUS[args.action],
        min_samples=args.min_samples,
        alpha=args.alpha,
        winner=getattr(args, "winner", None),
        name=args.name,
        description=args.description,
    )
    with EventProducer.from_settings(settings) as producer:
        ev = producer.send("Experiment", event)
    print(json.dumps(ev, ensure_ascii=False, indent=2))
    return 0


def register(sub: Commands) -> None:
    p = command(sub, "emit", emit, help="send events from a JSON-lines file (validated first)")
    p.add_argument("file", help='JSON-lines file, or "-" for standard input')
    p.add_argument("--type", help='record type of every line (else each line has "_type")')
    p.add_argument("--rejects", help="write rejected lines with their error here")

    ex = Actions(sub, "experiments", help="create, stop or conclude an A/B experiment")
    p = ex.add("create", experiments, help="start routing --split percent to the treatment")
    p.add_argument(
        "--rollout",
        help="gradual rollout: treatment percents, e.g. 10,25,50,100 (WEIGHT_BASED; the streams "
        "worker advances a step while the treatment is healthy, stops it on a CRITICAL alert)",
    )
    p.add_argument(
        "--rollout-step-s",
        type=float,
        default=3600.0,
        help="least time each rollout step runs before the next (seconds)",
    )
    ex.add("stop", experiments, help="stop the experiment (traffic back to the control)")
    p = ex.add("conclude", experiments, help="record the outcome, with --winner")
    p.add_argument("--winner", choices=["control", "treatment"], help="the winning arm")
    ex.shared("experiment_id", help="experiment id, e.g. v1-vs-v2")
    ex.shared("--control", help="control model version (required)")
    ex.shared("--treatment", help="treatment model version (required)")
    ex.shared("--name", help="human name (default: the id)")
    ex.shared("--split", type=float, default=50.0, help="percent of traffic on the treatment")
    ex.shared(
        "--strategy",
        default="STICKY",
        help="RANDOM, ROUND_ROBIN, TIME_BASED, WEIGHT_BASED or STICKY",
    )
    ex.shared("--min-samples", type=int, default=100, help="samples per arm before a decision")
    ex.shared("--alpha", type=float, default=0.05, help="significance level")
    ex.shared("--description", help="what is being tested")
