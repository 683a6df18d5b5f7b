"""The alert owner: every alert request (from stage 2's windows, stage 1's change detectors, the
heartbeat and resource watches, the alert consumer and operators) is keyed by its dedup key, and
the worker that owns the key's partition applies it to the key's state (the ``alert-book`` table,
changelog-backed, so it survives restarts and moves with the partition). Only this agent writes
the ``alerts`` topic.

A request redelivered after a crash finds its id in the key's state and re-emits the transition
it produced the first time, with the same event id (the alert consumer de-duplicates)."""

from __future__ import annotations

import time
from typing import Any

from streams.logic.alerts import apply, quiet_resolve, raise_request
from streams.logic.registry import Registry
from streams.pipeline import Pipeline, put

QUIET_EVERY_S = 5.0


async def apply_request(pipe: Pipeline, request: dict[str, Any], partition: int) -> None:
    key = request["dedup_key"]
    cfg = pipe.cfg_for(request.get("model_version"))
    state, events = apply(pipe.alert_book.get(key), request, cfg.alerts)
    state["partition"] = partition
    put(pipe.alert_book, key, state, partition)
    for event in events:
        await pipe.outputs.send("Alert", event)
        if event["severity"] == "CRITICAL" and event["status"] == "OPEN":
            await rollback_if_on_probation(pipe, event)


async def rollback_if_on_probation(pipe: Pipeline, alert: dict[str, Any]) -> None:
    """A CRITICAL alert on a version promoted less than the probation period ago rolls it back
    to the version it replaced (the registry's events, then a HIGH alert saying so)."""
    version = alert.get("model_version")
    if not version or pipe.settings.probation_s <= 0:
        return
    with pipe.live.lock:
        registry = Registry(pipe.live.registry)
    now = int(time.time() * 1000)
    events = registry.rollback(version, alert, now, int(pipe.settings.probation_s * 1000))
    if not events:
        return
    for ev in events:
        await pipe.outputs.send("ModelVersion", ev)
        with pipe.live.lock:  # do not decide it again before the mirror reads it back
            pipe.live.registry[ev["model_version"]] = ev
    restored = events[1]["model_version"]
    await send_request(
        pipe,
        raise_request(
            "PERFORMANCE_DEGRADATION",
            "HIGH",
            f"rollback:{version}",
            f"Rolled back {version} to {restored}",
            now,
            model_version=version,
            message=events[0]["reason"],
            recommendation=f"{restored} serves again: route traffic to it, then investigate "
            f"{version} before promoting it again.",
            details={
                "restored": restored,
                "alert_id": str(alert["alert_id"]),
                "probation_s": f"{pipe.settings.probation_s:g}",
            },
            resolve_after_s=pipe.cfg.alerts.quiet_resolve_s,
        ),
    )


async def send_request(pipe: Pipeline, request: dict[str, Any]) -> dict[str, Any]:
    """Hand a request to the key's owner (whichever worker that is)."""
    return await pipe.outputs.send("Alert", request, topic="alert-requests")


def register(pipe: Pipeline) -> None:
    topic_name = pipe.alert_requests.get_topic_name()

    @pipe.app.agent(pipe.alert_requests, name="alert-owner")
    async def owner(stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            request = pipe.decoder.decode(
                topic_name,
                m.key,
                m.value,
                expected="Alert",
                partition=m.partition,
                offset=m.offset,
            )
            if request is not None:
                await apply_request(pipe, request, m.partition)

    @pipe.app.timer(interval=QUIET_EVERY_S)
    async def quiet() -> None:
        """Alerts that asked to resolve after a quiet period (change points, notices)."""
        now = int(time.time() * 1000)
        for key, state in list(pipe.alert_book.items()):
            request = quiet_resolve(state, key, now)
            if request is not None:
                await apply_request(pipe, request, state["partition"])
