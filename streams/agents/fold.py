"""Stage 1: fold chat turns and feedback into per-partition partials, in batches, and forward
each touched partial to stage 2 keyed by its group.

Batching is done here rather than with ``Stream.take_events``: on this machine take_events'
passive buffering cost ~4 asyncio tasks per event and capped the worker near 3 k events/s. The
stream runs with acks disabled; events are acked only after their batch is folded and sent, so a
crash replays (and the partial watermarks dedupe) rather than loses.
"""

from __future__ import annotations

import asyncio
import time
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
    pipe.metrics.observe(schema, (rec for _, rec, _, _ in items))
    for key, part in partials.items():
        put(table, key, part, part["p"])
        await pipe.partials_topic.send(key=part["g"], value=part)
    await pipe.flush_dead_letters()
    if pipe.pending_changes:
        await pipe.emit_changes()


class Batcher:
    """Collect events up to ``max_size`` or ``within`` seconds, fold them, then ack them."""

    def __init__(
        self, pipe: Pipeline, table: Any, source: str, schema: str, max_size: int, within: float
    ) -> None:
        self.pipe, self.table, self.source, self.schema = pipe, table, source, schema
        self.max_size, self.within = max_size, within
        self.events: list[Any] = []
        self.first = 0.0
        self.lock = asyncio.Lock()

    async def add(self, event: Any) -> None:
        if not self.events:
            self.first = time.monotonic()
        self.events.append(event)
        if len(self.events) >= self.max_size:
            await self.flush()

    async def flush_if_due(self) -> None:
        if self.events and time.monotonic() - self.first >= self.within:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            events, self.events = self.events, []
            if not events:
                return
            await _fold(self.pipe, self.table, self.source, self.schema, events)
            for ev in events:
                ev.ack()


def register(pipe: Pipeline) -> None:
    app, s = pipe.app, pipe.settings
    turns = Batcher(pipe, pipe.turn_partials, "turn", "ChatTurn", s.batch_size, s.batch_within_s)
    feedback = Batcher(
        pipe, pipe.feedback_partials, "feedback", "Feedback", s.batch_size, s.batch_within_s
    )

    @app.agent(pipe.turns_topic, name="fold-turns")
    async def fold_turns(stream: Any) -> None:
        async for event in stream.noack().events():
            await turns.add(event)

    @app.agent(pipe.feedback_topic, name="fold-feedback")
    async def fold_feedback(stream: Any) -> None:
        async for event in stream.noack().events():
            await feedback.add(event)

    @app.timer(interval=max(0.05, s.batch_within_s / 2))
    async def flush_due() -> None:
        await turns.flush_if_due()
        await feedback.flush_if_due()
