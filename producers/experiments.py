"""The one builder of ``Experiment`` events: the CLI (``continuum experiments``) and the
simulators announce, stop and conclude A/B tests with it."""

from __future__ import annotations

from typing import Any

STATUSES = ("RUNNING", "STOPPED", "CONCLUDED")


def experiment_event(
    experiment_id: str,
    control: str,
    treatment: str,
    *,
    split_percent: float = 50.0,
    strategy: str = "STICKY",
    status: str = "RUNNING",
    min_samples: int = 100,
    alpha: float = 0.05,
    winner: str | None = None,
    name: str | None = None,
    description: str = "",
    metadata: dict[str, str] | None = None,
    event_id: str | None = None,
    event_time: int | None = None,
) -> dict[str, Any]:
    """An ``Experiment`` record; ``event_id`` / ``event_time`` are filled by the producer when
    left out (a simulator passes stable ones so a re-run updates the same experiment)."""
    if status not in STATUSES:
        raise ValueError(f"experiment status must be one of {', '.join(STATUSES)}, got {status!r}")
    ev: dict[str, Any] = {
        "experiment_id": experiment_id,
        "name": name or experiment_id,
        "control_version": control,
        "treatment_version": treatment,
        "traffic_split": split_percent,
        "strategy": strategy.upper(),
        "min_samples": min_samples,
        "alpha": alpha,
        "status": status,
        "winner": winner,
        "description": description,
        "metadata": dict(metadata or {}),
    }
    if event_id is not None:
        ev["event_id"] = event_id
    if event_time is not None:
        ev["event_time"] = event_time
    return ev
