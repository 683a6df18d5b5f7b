"""Stage 2: keep the newest snapshot of every partial per group, and evaluate the group when its
window closes (chat models ``m:``, predictive models ``p:``) or at most every few seconds
(experiments ``x:``)."""

from __future__ import annotations

import time
from typing import Any

from streams.logic.evaluation import evaluate_experiment, evaluate_model
from streams.logic.partials import (
    ALL_VARIANTS,
    WINDOWED,
    Group,
    newer,
    slot_key,
    window_kind,
)
from streams.pipeline import Pipeline, delete, key_partition, put

AB_EVERY_S = 2.0
AB_SWEEP_S = 10.0


def _group_partials(pipe: Pipeline, group: str) -> list[dict[str, Any]]:
    return [v for v in pipe.group_slots.values() if v["g"] == group]


# Decisions of a group's last evaluations kept in its state: re-sent the first time this process
# touches the group, so a crash between an evaluation's state write and its sends (the
# uncommitted span, redelivered) loses none (same ids: the alert owner and every reader
# de-duplicate). Retrain triggers fire once and raise requests may be a window's only breach;
# resolve requests are not kept: every later window within its threshold sends one again.
OUTBOX = 48


async def _resend_outbox(pipe: Pipeline, group: str, state: dict[str, Any]) -> None:
    if group in pipe.outbox_sent:
        return
    pipe.outbox_sent.add(group)
    for schema, event in state.get("outbox", []):
        if schema == "Alert":
            replayed = {**event, "details": {**event["details"], "replayed": "1"}}
            await pipe.outputs.send("Alert", replayed, topic="alert-requests")
        else:
            await pipe.outputs.send(schema, event)


async def _evaluate_model(pipe: Pipeline, group: str, partition: int) -> None:
    """A chat model (group ``m:``) or a predictive model (``p:``)."""
    g = Group.parse(group)
    model = g.subject
    kind = window_kind(group)
    chat = g.is_chat
    state = pipe.group_state.get(group) or {}
    await _resend_outbox(pipe, group, state)
    partials = _group_partials(pipe, group)
    baseline = pipe.live.baselines.get(model) or state.get("frozen_baseline")
    with pipe.live.lock:
        evaluation = pipe.live.evaluations.get(model) if chat else None
        registered = pipe.live.registry.get(model)
    out = evaluate_model(
        model,
        partials,
        baseline,
        state,
        pipe.cfg_for(model, pipe.cfg if chat else pipe.prediction_cfg),
        evaluation_accuracy=evaluation.get("intent_accuracy") if evaluation else None,
        trained_at_ms=registered.get("trained_at") if registered else None,
        kind=kind,
    )
    new_state = out["state"]
    if out["baseline"] is not None:
        new_state["frozen_baseline"] = out["baseline"]
        await pipe.outputs.send("Baseline", out["baseline"])
    for sig in out["signals"]:
        await pipe.outputs.send("DriftSignal", sig)
    for request in out["alerts"]:  # to the alert owner of each dedup key
        await pipe.outputs.send("Alert", request, topic="alert-requests")
    for trig in out["triggers"]:
        await pipe.outputs.send("RetrainTrigger", trig)
    decided = [("Alert", r) for r in out["alerts"] if r["status"] == "OPEN"]
    decided += [("RetrainTrigger", t) for t in out["triggers"]]
    if decided:
        new_state["outbox"] = [*state.get("outbox", []), *decided][-OUTBOX:]
    if out["summary"] is not None:
        new_state["last_window"] = out["summary"]
    if chat:
        new_state["feedback"] = out.get("feedback")
    else:
        new_state["outcomes"] = out.get("outcomes")
    put(pipe.group_state, group, new_state, partition)
    # Forget buckets that no window or baseline will read again.
    horizon = new_state.get("evaluated_end", 0) - pipe.cfg.retention_ms
    if new_state.get("frozen_baseline") or pipe.live.baselines.get(model):
        for p in partials:
            if p["k"] in WINDOWED and p["b"] < horizon:
                delete(pipe.group_slots, slot_key(p["k"], p["s"], p["b"], p["p"]), partition)


async def _evaluate_experiment(pipe: Pipeline, group: str, partition: int) -> None:
    exp_id = Group.parse(group).subject
    now = time.monotonic()
    if now - pipe.ab_last_eval.get(group, 0.0) < AB_EVERY_S:
        pipe.ab_dirty[group] = partition  # the timer below catches up
        return
    pipe.ab_last_eval[group] = now
    pipe.ab_dirty.pop(group, None)
    experiment = pipe.live.experiments.get(exp_id) or {
        "experiment_id": exp_id,
        "traffic_split": 50.0,
        "min_samples": 100,
        "alpha": 0.05,
        "status": "RUNNING",
        "registered": False,
    }
    prev = pipe.ab_results.get(group) or {}
    seq = dict(prev.get("_sequential", {}))
    partials = _group_partials(pipe, group)
    result = evaluate_experiment(experiment, partials, seq)
    result["_sequential"] = seq
    result["_inputs"] = _inputs(partials)
    result["evaluated_at"] = int(time.time() * 1000)
    put(pipe.ab_results, group, result, partition)
    for arm in ("control", "treatment"):
        pipe.metrics.ab_samples.labels(exp_id, arm, "turns").set(result[arm]["turns"])
        pipe.metrics.ab_samples.labels(exp_id, arm, "feedback").set(result[arm]["feedback"])


def _inputs(partials: list[dict[str, Any]]) -> list[int]:
    """What an evaluation saw: how many partials and the sum of their offset watermarks."""
    return [len(partials), sum(int(p["wm"]) for p in partials)]


async def _sweep_experiments(pipe: Pipeline) -> None:
    """Re-evaluate every experiment this worker owns whose inputs changed since its last result.
    The throttle's dirty marks live in memory: after a rebalance the new owner has the partials
    (restored from the changelog) but not the marks, and no new partial may ever arrive."""
    active = {
        tp.partition
        for tp in pipe.app.assignor.assigned_actives()
        if tp.topic == pipe.partials_topic.get_topic_name()
    }
    groups = {v["g"] for v in list(pipe.group_slots.values()) if Group.parse(v["g"]).is_experiment}
    for group in sorted(groups):
        partition = key_partition(pipe.ab_results, group)
        if partition not in active:
            continue
        prev = pipe.ab_results.get(group) or {}
        if prev.get("_inputs") != _inputs(_group_partials(pipe, group)):
            await _evaluate_experiment(pipe, group, partition)


def register(pipe: Pipeline) -> None:
    @pipe.app.timer(interval=AB_EVERY_S)
    async def catch_up() -> None:
        for group, partition in list(pipe.ab_dirty.items()):
            await _evaluate_experiment(pipe, group, partition)

    @pipe.app.timer(interval=AB_SWEEP_S)
    async def sweep() -> None:
        await _sweep_experiments(pipe)

    @pipe.app.agent(pipe.partials_topic, name="rollup")
    async def rollup(stream: Any) -> None:
        async for event in stream.events():
            part = event.value
            partition = event.message.partition
            key = slot_key(part["k"], part["s"], part["b"], part["p"])
            if newer(pipe.group_slots.get(key), part):
                put(pipe.group_slots, key, part, partition)
            group = part["g"]
            if Group.parse(group).is_model:
                windowed = window_kind(group)
                if part["k"] == windowed and part["s"].endswith(f"|{ALL_VARIANTS}"):
                    state = pipe.group_state.get(group) or {}
                    # A new bucket closes a window; until a baseline exists, any late bucket
                    # (a partition behind the others) may complete the turns to freeze.
                    unfrozen = "frozen_baseline" not in state and not pipe.live.baselines.get(
                        Group.parse(group).subject
                    )
                    if (
                        part["b"] > state.get("evaluated_end", -1)
                        or "first_seen" not in state
                        or unfrozen
                    ):
                        await _evaluate_model(pipe, group, partition)
                elif part["k"] != windowed:
                    state = pipe.group_state.get(group) or {}
                    if "first_seen" in state:
                        await _evaluate_model(pipe, group, partition)
            else:
                await _evaluate_experiment(pipe, group, partition)
