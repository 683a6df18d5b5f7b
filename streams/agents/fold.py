"""Stage 1: fold chat turns and feedback into per-partition partials, in batches, and forward
each touched partial to stage 2 keyed by its group."""

from __future__ import annotations

from typing import Any

from streams.pipeline import Pipeline, put


async def _fold(pipe: Pipeline, table: Any, source: str, schema: str, events: list[Any]) -> None:
    items = []
    for ev in events:
        msg = ev.message
        rec = pipe.decoder.decode(
            msg.topic, ev.key, ev.value, expected=schema, partition=msg.partition, offset=msg.offset
        )
        if rec is None:
            continue
        items.append((source, rec, msg.partition, msg.offset))
        if source == "turn":
            pipe.watch(rec, msg.partition)
    skipped_before = pipe.folder.skipped
    partials = pipe.folder.fold(items, table.get)
    pipe.metrics.replays_skipped.inc(pipe.folder.skipped - skipped_before)
    pipe.metrics.events.labels(schema).inc(len(items))
    for key, part in partials.items():
        put(table, key, part, part["p"])
        await pipe.partials_topic.send(key=part["g"], value=part)
    await pipe.flush_dead_letters()
    if pipe.pending_changes:
        await pipe.emit_changes()


def register(pipe: Pipeline) -> None:
    app, s = pipe.app, pipe.settings

    @app.agent(pipe.turns_topic, name="fold-turns")
    async def fold_turns(stream: Any) -> None:
        async for events in stream.take_events(s.batch_size, within=s.batch_within_s):
            await _fold(pipe, pipe.turn_partials, "turn", "ChatTurn", events)

    @app.agent(pipe.feedback_topic, name="fold-feedback")
    async def fold_feedback(stream: Any) -> None:
        async for events in stream.take_events(s.batch_size, within=s.batch_within_s):
            await _fold(pipe, pipe.feedback_partials, "feedback", "Feedback", events)
