"""``continuum thresholds``: per-model overrides on the compacted ``thresholds`` topic (applied by
running streams workers at their next window), the names and seed defaults, and calibration
against history."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from continuum.cli.common import Actions, Commands, time_ms
from continuum.settings import Settings


def _current(settings: Settings) -> dict[str, dict[str, Any]]:
    from jobs.topicread import latest_by

    return latest_by(settings, "thresholds", "model_version")


def _write(settings: Settings, event: dict[str, Any]) -> dict[str, Any]:
    from producers.producer import EventProducer

    with EventProducer.from_settings(settings) as producer:
        return producer.send("Thresholds", event)


def names(args: argparse.Namespace, settings: Settings) -> int:
    from streams.logic.thresholds import GLOBAL_ONLY, NAMES, WHERE, seed_defaults

    seed = seed_defaults()
    for name in NAMES:
        scope = "per worker" if name in GLOBAL_ONLY else "per model"
        print(f"{name:28} {seed[name]:>10g}  {scope:10} {', '.join(WHERE[name])}")
    return 0


def list_(args: argparse.Namespace, settings: Settings) -> int:
    for model, ev in sorted(_current(settings).items()):
        if ev.get("values"):
            print(f"{model:24} {json.dumps(ev['values'], sort_keys=True)}  ({ev['reason']})")
    return 0


def get(args: argparse.Namespace, settings: Settings) -> int:
    from streams.logic.thresholds import in_force
    from streams.settings import StreamsSettings

    have = (_current(settings).get(args.model_version) or {}).get("values") or {}
    t, sources = in_force(StreamsSettings.from_env().global_thresholds(), have)
    for name, value in sorted(t.values().items()):
        print(f"{name:28} {value:>10g}  {sources[name]}")
    return 0


def set_(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.replay import latest_baselines
    from jobs.topicread import latest_by
    from streams.logic.thresholds import thresholds_event, with_set

    model, current = args.model_version, _current(settings)
    values = with_set((current.get(model) or {}).get("values") or {}, args.values)
    known = set(latest_by(settings, "model-registry", "model_version"))
    known |= set(latest_baselines(settings)) | set(current)
    if model not in known and not args.any_model:
        raise ValueError(
            f"unknown model {model!r}: not in the model registry nor on the baselines topic "
            f"(known: {', '.join(sorted(known)) or 'none'}); pass --any-model to set "
            "thresholds before its first traffic"
        )
    now = int(time.time() * 1000)
    ev = _write(settings, thresholds_event(model, values, "cli", args.reason or "", now))
    print(f"{model}: {json.dumps(ev['values'], sort_keys=True)}")
    return 0


def unset(args: argparse.Namespace, settings: Settings) -> int:
    from streams.logic.thresholds import thresholds_event, with_unset

    model = args.model_version
    have = (_current(settings).get(model) or {}).get("values") or {}
    values = with_unset(have, args.names, model)
    now = int(time.time() * 1000)
    ev = _write(settings, thresholds_event(model, values, "cli", args.reason or "", now))
    print(f"{model}: {json.dumps(ev['values'], sort_keys=True)}")
    return 0


def calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.calibrate import calibrate as run_calibration
    from jobs.calibrate import history, stored_baseline
    from jobs.replay import ReplaySpec
    from streams.logic.calibration import SHIFT_SIGNAL
    from streams.logic.thresholds import check, thresholds_event

    model = args.model_version
    if args.target_per_week <= 0:
        raise ValueError(f"--target-per-week must be > 0, got {args.target_per_week}")
    spec = ReplaySpec(model, time_ms(args.start), time_ms(args.end))
    archive = Path(args.from_archive) if args.from_archive else None
    report = run_calibration(
        list(history(settings, spec, archive)),
        window_ms=int(args.window_s * 1000),
        hop_ms=int(args.hop_s * 1000),
        target_per_week=args.target_per_week,
        freeze_after=args.freeze_after,
        baseline=stored_baseline(settings, model) if args.stored_baseline else None,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        weeks = report["span_ms"] / (7 * 86_400_000)
        print(
            f"{model}: {report['turns']} turns, {report['windows']} windows over {weeks:.2f} "
            f"weeks; target {args.target_per_week:g} false alarm(s) a week"
        )
        seed_delay, tuned_delay = report["delay_ms"]["seed"], report["delay_ms"]["proposed"]
        shift_of = {v: k for k, v in SHIFT_SIGNAL.items()}
        for p in report["proposals"]:
            shift = shift_of.get(p["signal"])
            delays = ""
            if shift:
                fmt = lambda ms: "missed" if ms is None else f"{ms / 60_000:.0f} min"  # noqa: E731
                delays = f"  {shift} shift found: seed {fmt(seed_delay[shift])}, proposed {fmt(tuned_delay[shift])}"
            proposed = "n/a" if p["proposed"] is None else f"{p['proposed']:g}"
            print(
                f"{p['threshold']:28} seed {p['seed']:<8g} proposed {proposed:<8} "
                f"({p['exceedances']}/{p['windows']} windows over it){delays}"
            )
    if args.write:
        values = check(
            {
                p["threshold"]: p["proposed"]
                for p in report["proposals"]
                if p["proposed"] is not None
            },
            per_model=True,
        )
        reason = (
            f"calibrated on {report['windows']} windows for "
            f"{args.target_per_week:g} false alarm(s) a week"
        )
        now = int(time.time() * 1000)
        _write(settings, thresholds_event(model, values, "calibration", reason, now))
        print(f"written to the thresholds topic for {model}")
    return 0


def register(sub: Commands) -> None:
    th = Actions(
        sub,
        "thresholds",
        help="per-model thresholds, applied live: set, unset, get, list; names and defaults",
    )
    p = th.add("set", set_, help="override thresholds of one model (name=value ...)")
    p.add_argument("model_version", help="model version")
    p.add_argument("values", nargs="+", help="name=value ...")
    p.add_argument(
        "--any-model",
        action="store_true",
        help="allow a model that is neither registered nor has a baseline yet",
    )
    p.add_argument("--reason", help="why (recorded on the event)")
    p = th.add("unset", unset, help="drop overrides of one model (back to the global values)")
    p.add_argument("model_version", help="model version")
    p.add_argument("names", nargs="+", help="threshold names (or comma lists)")
    p.add_argument("--reason", help="why (recorded on the event)")
    p = th.add("get", get, help="the values in force for a model, and where each comes from")
    p.add_argument("model_version", help="model version")
    th.add("list", list_, help="every model's overrides")
    th.add("names", names, help="every threshold: seed default, scope, where it is used")
    p = th.add(
        "calibrate", calibrate, help="propose thresholds from history for a false-alarm rate"
    )
    p.add_argument("model_version", help="model version")
    p.add_argument("--from", dest="start", help="first event time (ISO-8601 or ms)")
    p.add_argument("--to", dest="end", help="last event time (ISO-8601 or ms)")
    p.add_argument("--from-archive", help="read the archive folder instead of Kafka")
    p.add_argument(
        "--target-per-week",
        type=float,
        default=1.0,
        help="false alarms per signal per week the history may show (default 1)",
    )
    p.add_argument("--window-s", type=float, default=3600, help="window, seconds")
    p.add_argument("--hop-s", type=float, default=300, help="hop, seconds")
    p.add_argument("--freeze-after", type=int, default=1000, help="turns a baseline is frozen from")
    p.add_argument(
        "--stored-baseline",
        action="store_true",
        help="compare with the model's baseline on the topic (default: its first turns)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--write", action="store_true", help="write the proposal")
