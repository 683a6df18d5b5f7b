"""History: ``continuum replay baseline`` (a baseline rebuilt from Kafka or the archive) and
``continuum baseline compare``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from continuum.cli.common import Actions, Commands, time_ms
from continuum.settings import Settings


def replay_baseline(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import Progress

    from jobs.replay import BaselineReplay, ReplaySpec, default_checkpoint

    spec = ReplaySpec(
        args.model_version,
        time_ms(args.start),
        time_ms(args.end),
        args.variant,
        kind="predictions" if args.predictions else "turns",
    )
    checkpoint = (
        Path(args.checkpoint)
        if args.checkpoint
        else default_checkpoint(settings, spec.model_version)
    )
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with Progress(transient=True) as bar:
        task = bar.add_task(f"replaying {args.model_version}", total=None)
        replay = BaselineReplay(
            spec,
            checkpoint=checkpoint,
            progress=lambda n, total: bar.update(task, completed=n, total=total),
            max_lateness_s=args.max_lateness_s,
        )
        if args.from_archive:
            baseline = replay.from_archive(Path(args.from_archive))
        else:
            baseline = replay.from_kafka(settings)
    text = json.dumps(baseline, indent=2, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    if args.publish:
        from producers.producer import EventProducer

        with EventProducer.from_settings(settings) as p:
            p.send("Baseline", baseline)
        print(
            f"published to {settings.topic_prefix}baselines: {baseline['sample_size']} {spec.kind}",
            file=sys.stderr,
        )
    return 0


def compare(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.table import Table

    from jobs.replay import compare_baselines, load_baseline

    rows = compare_baselines(load_baseline(args.a, settings), load_baseline(args.b, settings))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"baseline {args.a} → {args.b}")
    for col in ("statistic", "A", "B", "change"):
        table.add_column(col, justify="right" if col != "statistic" else "left")

    def fmt(v: Any) -> str:
        return "—" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    for r in rows:
        change = "" if r["change"] is None else f"{r['change']:+.1%}"
        table.add_row(r["stat"], fmt(r["a"]), fmt(r["b"]), change)
    Console().print(table)
    return 0


def register(sub: Commands) -> None:
    replay = Actions(sub, "replay", help="rebuild a baseline from history (Kafka or the archive)")
    p = replay.add("baseline", replay_baseline, help="a model version's baseline over a period")
    p.add_argument("model_version", help="model version to rebuild the baseline of")
    p.add_argument("--start", help="first event time (ISO-8601 or epoch ms)")
    p.add_argument("--end", help="last event time, inclusive (ISO-8601 or epoch ms)")
    p.add_argument("--variant", help="only this experiment arm (a prediction's phase)")
    p.add_argument(
        "--predictions",
        action="store_true",
        help="a predictive model: read the predictions topic instead of chat.turns",
    )
    p.add_argument("--from-archive", metavar="DIR", help="read archive files instead of Kafka")
    p.add_argument(
        "--max-lateness-s", type=float, help="Kafka: how late events may arrive (bounds the end)"
    )
    p.add_argument(
        "--checkpoint", help="resume file (default CONTINUUM_HOME/replay-MODEL.checkpoint.json)"
    )
    p.add_argument("--out", help="write the baseline JSON here (default: print it)")
    p.add_argument(
        "--no-publish",
        dest="publish",
        action="store_false",
        help="do not publish to the compacted baselines topic",
    )

    baseline = Actions(sub, "baseline", help="compare two baselines (JSON files or model versions)")
    p = baseline.add("compare", compare, help="statistic by statistic, with the change")
    p.add_argument("a", help="baseline JSON file or model version on the baselines topic")
    p.add_argument("b", help="baseline JSON file or model version on the baselines topic")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
