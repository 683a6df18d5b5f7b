"""Stage 1's online change detection: one detector pair per (source, partition, model, metric),
and the events a change point produces (a ``change_point`` DriftSignal and a LOW alert request).

Detectors live with the partition whose records feed them: a revoked partition's detectors are
forgotten, its next owner learns the level again (a warm-up of 200 observations)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.ids import stable_id
from streams.logic.alert_rules import change_request
from streams.logic.alerts import AlertThresholds
from streams.logic.detectors import ChangeDetector, ChangePoint

# (metric, field of the record, watched on a log scale)
WATCHED = (("latency_ms", "latency_ms", True), ("confidence", "confidence", False))


@dataclass(frozen=True)
class Change:
    """A change point of one model's metric, at the event time of the record that showed it."""

    point: ChangePoint
    model_version: str
    at_ms: int


class ChangeWatch:
    """The detectors of the partitions one stage-1 consumer owns, and the changes they found
    since the last :meth:`drain`."""

    def __init__(self) -> None:
        self.detectors: dict[tuple[str, int, str, str], ChangeDetector] = {}
        self.pending: list[Change] = []

    def watch(self, record: Mapping[str, Any], partition: int, source: str) -> None:
        """Feed a turn's (or a prediction's) latency and confidence to its partition's
        detectors."""
        model = record["model_version"]
        for metric, field, log_scale in WATCHED:
            value = record.get(field)
            if value is None:
                continue
            key = (source, partition, model, metric)
            det = self.detectors.get(key)
            if det is None:
                det = self.detectors[key] = ChangeDetector(metric, log_scale=log_scale)
            point = det.update(value)
            if point is not None:
                self.pending.append(Change(point, model, record["event_time"]))

    def forget(self, source: str, partition: int) -> None:
        for key in [k for k in self.detectors if k[:2] == (source, partition)]:
            del self.detectors[key]

    def drain(self) -> list[Change]:
        changes, self.pending = self.pending, []
        return changes


def change_signal(change: Change) -> dict[str, Any]:
    """The DriftSignal of a change point: its id derived from what fired, so a replayed batch
    emits the same signal."""
    point, model, at = change.point, change.model_version, change.at_ms
    return {
        "event_id": stable_id("change", model, point.metric, point.detector, at),
        "event_time": at,
        "model_version": model,
        "variant": None,
        "signal": "change_point",
        "detector": point.detector,
        "value": float(point.recent),
        "baseline": float(point.before),
        "change": float((point.recent - point.before) / point.before) if point.before else 0.0,
        "threshold": 0.0,
        "breached": True,
        "window_start": None,
        "window_end": at,
        "sample_size": point.at,
        "details": {"metric": point.metric, "direction": point.direction},
    }


def change_events(
    changes: list[Change], thresholds: AlertThresholds
) -> list[tuple[str, dict[str, Any], str | None]]:
    """(schema, event, topic) for each change: its DriftSignal (the schema's own topic) and a
    request to the alert owner (topic ``alert-requests``)."""
    out: list[tuple[str, dict[str, Any], str | None]] = []
    for change in changes:
        point = change.point
        out.append(("DriftSignal", change_signal(change), None))
        request = change_request(
            change.model_version,
            point.metric,
            point.direction,
            point.detector,
            float(point.before),
            float(point.recent),
            change.at_ms,
            thresholds,
        )
        out.append(("Alert", request, "alert-requests"))
    return out
