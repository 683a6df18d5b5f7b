"""``continuum models``: the model registry (list, register, promote, retire); every change is a
``ModelVersion`` event on the compacted registry topic, the same path automatic changes take."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from continuum.cli.common import Actions, Commands, time_ms
from continuum.settings import Settings


def list_(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.registry import load_registry

    registry = load_registry(settings)
    if not registry.versions:
        print("no model version registered")
    for v in sorted(registry.versions.values(), key=lambda v: v["event_time"]):
        print(f"{v['model_version']:24} {v['state']:10} {v.get('reason') or ''}")
    return 0


def _publish(
    settings: Settings, events: list[dict[str, Any]], baseline: dict[str, Any] | None = None
) -> None:
    from producers.producer import EventProducer

    with EventProducer.from_settings(settings) as p:
        for ev in events:
            p.send("ModelVersion", ev)
            print(
                f"{ev['model_version']}: {ev['previous_state'] or '-'} -> {ev['state']} ({ev['reason']})"
            )
        if baseline is not None:
            p.send("Baseline", baseline)


def register_version(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.registry import load_registry

    now = int(time.time() * 1000)
    event = load_registry(settings).register(
        args.model_version,
        now,
        trained_at=time_ms(args.trained_at) if args.trained_at else now,
        artifact_uri=args.artifact,
        dataset=args.dataset,
        training_metrics=training_metrics_file(args.training_metrics),
    )
    _publish(settings, [event])
    return 0


def training_metrics_file(path: str | None) -> str | None:
    """The training metrics to register, from a JSON file: the metrics object itself or a model
    server's ``info.json`` (its ``training_metrics``)."""
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--training-metrics {path}: cannot read a JSON object: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("training_metrics"), dict):
        data = data["training_metrics"]
    if not isinstance(data, dict):
        raise SystemExit(f"--training-metrics {path}: expected a JSON object")
    return json.dumps(data, separators=(",", ":"))


def retire(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.registry import load_registry

    now = int(time.time() * 1000)
    reason = args.reason or "retired by an operator"
    _publish(settings, [load_registry(settings).retire(args.model_version, now, reason)])
    return 0


def promote(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.registry import inherited_baseline, load_registry
    from jobs.replay import latest_baselines
    from jobs.topicread import read_to_end

    now = int(time.time() * 1000)
    baselines = latest_baselines(settings)
    events = load_registry(settings).promote(
        args.model_version,
        now,
        evaluations=read_to_end(settings, "evaluations"),
        experiments=read_to_end(settings, "experiments"),
        baselines=baselines,
        reason=args.reason or "",
        allow_partial=args.allow_partial,
    )
    _publish(settings, events, inherited_baseline(events[0], baselines, now))
    print(
        f"drift of {args.model_version} is measured against the baseline of "
        f"{events[0]['baseline_model_version'] or '(frozen from its first turns)'}"
    )
    return 0


def register(sub: Commands) -> None:
    models = Actions(sub, "models", help="model registry: list, register, promote, retire")
    models.add("list", list_, help="every registered version and its state")
    p = models.add("register", register_version, help="add a trained version (state REGISTERED)")
    p.add_argument("model_version", help="model version")
    p.add_argument(
        "--trained-at", help="when training finished (ISO-8601 or epoch ms; default now)"
    )
    p.add_argument("--artifact", help="where the weights are")
    p.add_argument("--dataset", help="training dataset")
    p.add_argument(
        "--training-metrics",
        help="JSON file of training metrics (or a model server's info.json): drift is also "
        "measured against them, feature by feature",
    )
    p.add_argument("--reason", help="why (recorded)")
    p = models.add(
        "promote", promote, help="to production, if its evaluation and experiment allow it"
    )
    p.add_argument("model_version", help="model version")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="accept a passing evaluation that skipped some of the seed's dimensions "
        "(recorded in the promotion's reason)",
    )
    p.add_argument("--reason", help="why (recorded)")
    p = models.add("retire", retire, help="take a version out of service")
    p.add_argument("model_version", help="model version")
    p.add_argument("--reason", help="why (recorded)")
