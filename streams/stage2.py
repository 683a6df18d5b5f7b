"""Stage 2: keep the newest snapshot of every partial per group, and evaluate the group when its
window closes (chat models ``m:``, predictive models ``p:``) or at most every few seconds
(experiments ``x:``).

The agent is thin: what to evaluate and what an evaluation sends, keeps and forgets are pure
functions (streams.logic.groups, streams.logic.evaluation); :class:`Rollup` reads and writes the
tables and holds this process's throttles."""

from __future__ import annotations

import time
from typing import Any

from streams.logic.evaluation import evaluate_experiment
from streams.logic.features import training_metrics
from streams.logic.groups import (
    GroupIndex,
    Send,
    inputs_of,
    model_step,
    outbox_sends,
    should_evaluate,
)
from streams.logic.partials import Group, newer, slot_key
from streams.logic.rollout import decide, is_rollout
from streams.pipeline import Pipeline, delete, key_partition, put

AB_EVERY_S = 2.0
AB_SWEEP_S = 10.0

UNREGISTERED = {  # an experiment seen in traffic before (or without) its Experiment event
    "traffic_split": 50.0,
    "min_samples": 100,
    "alpha": 0.05,
    "status": "RUNNING",
    "registered": False,
}


class Rollup:
    """Stage 2 on one worker: the group-slots table behind a :class:`GroupIndex`, and the
    in-memory marks of what this process already did (outboxes re-sent, experiment throttle)."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.index = GroupIndex()
        self.stale = True  # rebuild the index before the next read
        self.outbox_sent: set[str] = set()  # groups whose outbox this process re-sent
        self.ab_last_eval: dict[str, float] = {}
        self.ab_dirty: dict[str, int] = {}  # group -> partition, evaluated by the catch-up timer

    # -- the group-slots table ---------------------------------------------------------------

    def _sync(self) -> None:
        table = self.pipe.group_slots
        if self.stale or len(self.index) != len(table):
            # A rebalance restored or dropped partitions under the index.
            self.index.rebuild(list(table.items()))
            self.stale = False

    def partials(self, group: str) -> list[dict[str, Any]]:
        self._sync()
        table = self.pipe.group_slots
        return [v for k in self.index.keys(group) if (v := table.get(k)) is not None]

    def groups(self) -> list[str]:
        self._sync()
        return self.index.groups()

    def keep(self, part: dict[str, Any], partition: int) -> None:
        """Store a partial unless the table holds a newer snapshot of its slot."""
        key = slot_key(part["k"], part["s"], part["b"], part["p"])
        if newer(self.pipe.group_slots.get(key), part):
            put(self.pipe.group_slots, key, part, partition)
            self.index.add(key, part["g"])

    def forget(self, keys: list[str], partition: int) -> None:
        for key in keys:
            delete(self.pipe.group_slots, key, partition)
            self.index.discard(key)

    async def send(self, sends: list[Send]) -> None:
        for schema, event, topic in sends:
            await self.pipe.outputs.send(schema, event, topic=topic)

    # -- models ------------------------------------------------------------------------------

    async def on_partial(self, part: dict[str, Any], partition: int) -> None:
        self.keep(part, partition)
        group = part["g"]
        g = Group.parse(group)
        if not g.is_model:
            await self.evaluate_experiment(group, partition)
            return
        state = self.pipe.group_state.get(group) or {}
        if should_evaluate(state, part, bool(self.pipe.live.baselines.get(g.subject))):
            await self.evaluate_model(group, partition)

    async def evaluate_model(self, group: str, partition: int) -> None:
        pipe = self.pipe
        g = Group.parse(group)
        model = g.subject
        state = pipe.group_state.get(group) or {}
        if group not in self.outbox_sent:
            self.outbox_sent.add(group)
            await self.send(outbox_sends(state))
        with pipe.live.lock:
            evaluation = pipe.live.evaluations.get(model) if g.is_chat else None
            registered = pipe.live.registry.get(model)
        step = model_step(
            group,
            self.partials(group),
            state,
            pipe.cfg_for(model, pipe.cfg if g.is_chat else pipe.prediction_cfg),
            live_baseline=pipe.live.baselines.get(model),
            evaluation_accuracy=evaluation.get("intent_accuracy") if evaluation else None,
            trained_at_ms=registered.get("trained_at") if registered else None,
            training=training_metrics(registered.get("training_metrics") if registered else None),
        )
        await self.send(step.sends)
        put(pipe.group_state, group, step.state, partition)
        self.forget(step.forget, partition)

    # -- experiments -------------------------------------------------------------------------

    async def evaluate_experiment(self, group: str, partition: int) -> None:
        pipe = self.pipe
        exp_id = Group.parse(group).subject
        now = time.monotonic()
        if now - self.ab_last_eval.get(group, 0.0) < AB_EVERY_S:
            self.ab_dirty[group] = partition  # the catch-up timer evaluates it
            return
        self.ab_last_eval[group] = now
        self.ab_dirty.pop(group, None)
        experiment = pipe.live.experiments.get(exp_id) or {"experiment_id": exp_id, **UNREGISTERED}
        prev = pipe.ab_results.get(group) or {}
        seq = dict(prev.get("_sequential", {}))
        partials = self.partials(group)
        result = evaluate_experiment(experiment, partials, seq)
        result["_sequential"] = seq
        result["_inputs"] = inputs_of(partials)
        result["evaluated_at"] = int(time.time() * 1000)
        if is_rollout(experiment):
            await self.roll(experiment, result, prev)
        put(pipe.ab_results, group, result, partition)
        for arm in ("control", "treatment"):
            pipe.metrics.ab_samples.labels(exp_id, arm, "turns").set(result[arm]["turns"])
            pipe.metrics.ab_samples.labels(exp_id, arm, "feedback").set(result[arm]["feedback"])

    async def roll(
        self, experiment: dict[str, Any], result: dict[str, Any], prev: dict[str, Any]
    ) -> None:
        """Advance or stop a gradual rollout (streams.logic.rollout): the next version of the
        experiment goes to the experiments topic, which every router follows. A move already
        sent is not decided again until it is read back."""
        sent = prev.get("_rollout_sent")
        if sent and sent["after"] == experiment.get("event_id"):  # ours not read back yet
            result["_rollout_sent"] = sent
            result["rollout"] = {**prev.get("rollout", {}), "waiting_for": sent["id"]}
            return
        with self.pipe.live.lock:
            alerts = list(self.pipe.live.alerts_open.values())
        counts = (result["control"]["turns"], result["treatment"]["turns"])
        decision = decide(experiment, counts, alerts, result["evaluated_at"])
        result["rollout"] = decision.status
        if decision.event is not None:
            result["_rollout_sent"] = {
                "id": decision.event["event_id"],
                "after": experiment.get("event_id"),
            }
            await self.send([("Experiment", decision.event, None)])

    async def catch_up(self) -> None:
        for group, partition in list(self.ab_dirty.items()):
            await self.evaluate_experiment(group, partition)

    async def sweep(self) -> None:
        """Re-evaluate every experiment this worker owns whose inputs changed since its last
        result. The throttle's dirty marks live in memory: after a rebalance the new owner has
        the partials (restored from the changelog) but not the marks, and no new partial may
        ever arrive."""
        pipe = self.pipe
        active = {
            tp.partition
            for tp in pipe.app.assignor.assigned_actives()
            if tp.topic == pipe.partials_topic.get_topic_name()
        }
        for group in self.groups():
            if not Group.parse(group).is_experiment:
                continue
            partition = key_partition(pipe.ab_results, group)
            if partition not in active:
                continue
            prev = pipe.ab_results.get(group) or {}
            if prev.get("_inputs") != inputs_of(self.partials(group)):
                await self.evaluate_experiment(group, partition)


def register(pipe: Pipeline) -> Rollup:
    rollup = Rollup(pipe)

    def restored(*_: Any, **__: Any) -> None:
        rollup.stale = True

    pipe.app.on_rebalance_complete.connect(restored)

    @pipe.app.timer(interval=AB_EVERY_S)
    async def catch_up() -> None:
        await rollup.catch_up()

    @pipe.app.timer(interval=AB_SWEEP_S)
    async def sweep() -> None:
        await rollup.sweep()

    @pipe.app.agent(pipe.partials_topic, name="rollup")
    async def agent(stream: Any) -> None:
        async for event in stream.events():
            await rollup.on_partial(event.value, event.message.partition)

    return rollup
