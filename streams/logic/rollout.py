"""Gradual rollout (the dispatch seed's WEIGHT_BASED strategy made safe): a schedule of treatment
shares that advances one step at a time, only while the treatment is healthy, and stops — every
call back to control — on a CRITICAL alert for it.

The plan and its progress live on the ``Experiment`` itself (its ``metadata``), so the compacted
``experiments`` topic is the one owner: an operator starts a rollout by publishing the experiment
(``continuum experiments start --strategy WEIGHT_BASED --rollout 10,25,50,100``), the streams
worker advances or stops it by publishing the next version of the same record, and every router
(gateway, MLClient) follows it. Keys in ``metadata``:

- ``rollout_schedule``: treatment percents, e.g. ``10,25,50,100``;
- ``rollout_step``: index of the step in force (``traffic_split`` is its percent);
- ``rollout_step_s``: least time a step runs before the next one (default ``step_s``);
- ``rollout_started_ms``: when the step began; ``rollout_base``: the arms' sample counts then
  (``control,treatment``), so the step's own split is checked for sample-ratio mismatch;
- ``rollout_state``: ``running``, ``completed`` or ``stopped``; ``rollout_reason``: why.

Stopping sets the treatment's share to 0 and keeps the experiment RUNNING, so every router sends
every call to the control (a STOPPED experiment would leave callers on their default model, which
may be the treatment); an operator resumes by publishing a new version of the experiment.

A step advances when it has run ``rollout_step_s``, each arm has ``min_samples`` new samples in
it, the step's split shows no sample-ratio mismatch (p >= ``srm_alpha``) and no CRITICAL alert is
open for the treatment's model version. Pure: the caller passes the clock, counts and alerts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.ids import stable_id
from streams.logic.abtest import sample_ratio_mismatch

RUNNING, COMPLETED, STOPPED = "running", "completed", "stopped"
DEFAULT_STEP_S = 3600.0
SRM_ALPHA = 0.001


class RolloutError(ValueError):
    """A rollout plan that cannot run; the message names the field."""


def parse_schedule(text: str) -> list[float]:
    """``"10,25,50,100"`` -> [10.0, 25.0, 50.0, 100.0]; increasing percents in (0, 100]."""
    try:
        steps = [float(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise RolloutError(
            f"rollout_schedule {text!r}: expected percents like 10,25,50,100"
        ) from exc
    if not steps:
        raise RolloutError("rollout_schedule is empty: expected percents like 10,25,50,100")
    if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
        raise RolloutError(f"rollout_schedule {text!r}: expected increasing percents in (0, 100]")
    return steps


def rollout_metadata(
    schedule: str, *, step_s: float = DEFAULT_STEP_S, now_ms: int
) -> dict[str, str]:
    """The metadata that starts a rollout at its first step (``traffic_split`` = its percent)."""
    parse_schedule(schedule)
    if step_s <= 0:
        raise RolloutError(f"rollout_step_s must be > 0 seconds, got {step_s!r}")
    return {
        "rollout_schedule": schedule,
        "rollout_step": "0",
        "rollout_step_s": f"{step_s:g}",
        "rollout_started_ms": str(now_ms),
        "rollout_base": "0,0",
        "rollout_state": RUNNING,
        "rollout_reason": "started",
    }


@dataclass(frozen=True)
class RolloutDecision:
    """What the rollout does now: ``event`` (a new Experiment version) or None, and a status for
    the A/B view (state, step, share, and why it holds)."""

    event: dict[str, Any] | None
    status: dict[str, Any]


def is_rollout(experiment: Mapping[str, Any]) -> bool:
    return str(experiment.get("strategy")) == "WEIGHT_BASED" and bool(
        (experiment.get("metadata") or {}).get("rollout_schedule")
    )


def decide(
    experiment: Mapping[str, Any],
    arm_counts: tuple[int, int],
    open_alerts: Iterable[Mapping[str, Any]],
    now_ms: int,
    *,
    step_s: float = DEFAULT_STEP_S,
    srm_alpha: float = SRM_ALPHA,
) -> RolloutDecision:
    """The rollout's next move for a RUNNING experiment with a plan (see the module doc)."""
    meta = dict(experiment.get("metadata") or {})
    schedule = parse_schedule(meta["rollout_schedule"])
    step = int(meta.get("rollout_step", 0))
    state = meta.get("rollout_state", RUNNING)
    share = schedule[min(step, len(schedule) - 1)]
    status: dict[str, Any] = {
        "state": state,
        "step": step,
        "schedule": schedule,
        "share_percent": share,
        "reason": meta.get("rollout_reason", ""),
    }
    if experiment.get("status") != "RUNNING" or state != RUNNING:
        return RolloutDecision(None, status)
    treatment = experiment["treatment_version"]
    critical = [
        a
        for a in open_alerts
        if a.get("severity") == "CRITICAL" and a.get("model_version") == treatment
    ]
    if critical:
        a = min(critical, key=lambda x: str(x.get("dedup_key")))
        reason = f"CRITICAL {a.get('alert_type')} open for {treatment}: {a.get('title')}"
        event = _next(
            experiment,
            meta,
            now_ms,
            "stop",
            step,
            traffic_split=0.0,
            rollout_state=STOPPED,
            rollout_reason=reason,
        )
        return RolloutDecision(event, {**status, "state": STOPPED, "reason": reason})
    if step >= len(schedule) - 1:
        return RolloutDecision(None, {**status, "state": COMPLETED, "reason": "last step"})
    base_c, base_t = (int(x) for x in meta.get("rollout_base", "0,0").split(","))
    new_c, new_t = arm_counts[0] - base_c, arm_counts[1] - base_t
    ran_s = (now_ms - int(meta.get("rollout_started_ms", now_ms))) / 1000
    need_s = float(meta.get("rollout_step_s", step_s))
    min_samples = int(experiment.get("min_samples", 100))
    srm = sample_ratio_mismatch(new_c, new_t, share / 100.0, srm_alpha)
    status.update(step_samples=[new_c, new_t], step_seconds=round(ran_s, 1), srm=srm)
    holds = []
    if ran_s < need_s:
        holds.append(f"step ran {ran_s:.0f}s of {need_s:g}s")
    if min(new_c, new_t) < min_samples:
        holds.append(f"step samples {new_c}/{new_t} under {min_samples} per arm")
    if srm["mismatch"]:
        holds.append(
            f"sample ratio mismatch: treatment {srm['observed_share']:.1%} of the step's samples, "
            f"planned {share:g}% (p={srm['p_value']:.2g})"
        )
    if holds:
        return RolloutDecision(None, {**status, "holding": holds})
    nxt = step + 1
    last = nxt == len(schedule) - 1
    reason = (
        f"step {step} ({share:g}%) healthy for {ran_s:.0f}s with {new_c}/{new_t} samples: "
        f"{schedule[nxt]:g}%"
    )
    event = _next(
        experiment,
        meta,
        now_ms,
        "advance",
        nxt,
        traffic_split=schedule[nxt],
        rollout_step=str(nxt),
        rollout_started_ms=str(now_ms),
        rollout_base=f"{arm_counts[0]},{arm_counts[1]}",
        rollout_state=COMPLETED if last else RUNNING,
        rollout_reason=reason,
    )
    return RolloutDecision(
        event, {**status, "state": "advancing", "step": nxt, "share_percent": schedule[nxt]}
    )


def _next(
    experiment: Mapping[str, Any],
    meta: dict[str, str],
    now_ms: int,
    action: str,
    step: int,
    *,
    traffic_split: float,
    **metadata: str,
) -> dict[str, Any]:
    """The experiment's next version; its id names the move, so a move decided twice (before the
    first was read back) is one event for every reader."""
    exp_id = str(experiment["experiment_id"])
    return {
        **{k: v for k, v in experiment.items() if k not in ("event_id", "event_time")},
        "event_id": stable_id("rollout", exp_id, action, step),
        "event_time": now_ms,
        "traffic_split": traffic_split,
        "metadata": {**meta, **metadata},
    }
