"""``continuum thresholds calibrate``: propose per-signal thresholds for one model version from
its history (Kafka or the archive), by :mod:`streams.logic.calibration`, and optionally write them
to the ``thresholds`` topic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from continuum.settings import Settings
from jobs.archive import archive_files, read_archive
from jobs.replay import ReplaySpec, latest_baselines
from jobs.topicread import read_to_end
from streams.logic.calibration import (
    apply_proposals,
    baseline_of,
    detection_delays,
    moved,
    propose,
    windows,
)
from streams.logic.drift import DriftThresholds


def history(
    settings: Settings, spec: ReplaySpec, archive: Path | None = None
) -> Iterator[dict[str, Any]]:
    """The model's turns in [start, end] from the archive or from Kafka (beginning to end)."""
    if archive is not None:
        records = read_archive(archive_files(archive, "chat.turns", spec.start_ms, spec.end_ms))
    else:
        records = read_to_end(settings, "chat.turns")
    for rec in records:
        if spec.wants(rec):
            t = rec["event_time"]
            yield {**rec, "event_time": int(t.timestamp() * 1000) if hasattr(t, "timestamp") else t}


def calibrate(
    turns: list[dict[str, Any]],
    *,
    window_ms: int,
    hop_ms: int,
    target_per_week: float = 1.0,
    freeze_after: int = 1000,
    baseline: dict[str, Any] | None = None,
    seed: DriftThresholds | None = None,
) -> dict[str, Any]:
    """The proposal for one model's history: per signal the seed value, the proposed value, the
    windows it would have breached, and the detection delay of injected shifts under the seed
    and the proposed thresholds."""
    seed = seed or DriftThresholds()
    turns = sorted(turns, key=lambda t: t["event_time"])
    if not turns:
        raise ValueError("no turns of this model in the history range")
    base = baseline or baseline_of(turns, freeze_after)
    if base is None:
        raise ValueError(
            f"only {len(turns)} turns in the history range: fewer than the {freeze_after} "
            "a baseline is frozen from"
        )
    wins = windows(turns, window_ms, hop_ms)
    span = turns[-1]["event_time"] - turns[0]["event_time"]
    proposals = propose(moved(wins, base, seed, window_ms), span, target_per_week, seed)
    tuned = apply_proposals(seed, proposals)
    return {
        "turns": len(turns),
        "windows": len(wins),
        "span_ms": span,
        "target_per_week": target_per_week,
        "proposals": [p.to_dict() for p in proposals],
        "delay_ms": {
            "seed": detection_delays(turns, base, seed, window_ms, hop_ms),
            "proposed": detection_delays(turns, base, tuned, window_ms, hop_ms),
        },
    }


def stored_baseline(settings: Settings, model: str) -> dict[str, Any] | None:
    return latest_baselines(settings).get(model)
