"""Stage 1: fold chat turns and feedback into per-partition partials, in batches, and forward
each touched partial to stage 2 keyed by its group.

This stage runs on a confluent-kafka consumer in its own thread (a Faust service starts and stops
it with the worker), not on a Faust stream: measured here, Faust's per-event stream machinery
(asyncio tasks, acks, per-event table writes) capped stage 1 near 3 k turns/s against a ~20 k/s
decode ceiling, so a batch goes from librdkafka straight to the fold.

Exactly once, per batch: (1) decode (bad records to the dead-letter topic) and fold into
partials, skipping offsets a partial already holds; (2) write each touched partial to this
stage's compacted changelog (partition = source partition) and to the partials topic (partition
= its group's, as Faust's JSON key would be partitioned); (3) wait for every write and dead
letter to be acknowledged; (4) commit the batch's offsets. A crash anywhere replays the batch
and the restored watermarks drop what was already folded. On assignment the partition's partials
are restored from the changelog before any record of it is folded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mode
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from continuum import kafka as clients
from continuum.kafka import Connection
from continuum.retry import with_retry
from producers.consumer import consume_available, is_record
from producers.producer import EventProducer
from schemas.ids import RecentIds
from schemas.serde import leading_event_id
from streams.layout import SCHEMAS, Stage1Layout, group_partition
from streams.logic.changes import ChangeWatch, change_events
from streams.logic.partials import (
    PREDICTION,
    TURN,
    WINDOWED_KIND,
    Stage1Folder,
    source_of,
)
from streams.pipeline import Pipeline

log = logging.getLogger(__name__)

# Longest wait for a batch's writes: the producers' message timeout (5 min), plus a margin.
FLUSH_DEADLINE_S = 330.0


class Stage1:
    """The fold loop over one consumer. ``consumer``/``producer``/``outputs`` are confluent-kafka
    shaped (unit tests pass fakes); ``restore_reader(topic, partitions)`` yields the changelog's
    (key, value) records of those partitions from the beginning to the end."""

    def __init__(
        self,
        pipe: Pipeline,
        consumer: Any,
        producer: Any,
        outputs: EventProducer,
        restore_reader: Callable[[str, list[int]], Iterable[tuple[bytes, bytes | None]]],
        tail_reader: Callable[[str, int, int, int], Iterable[bytes | None]] | None = None,
    ) -> None:
        """``tail_reader(topic, partition, start, end)`` yields the values of a partition's
        records in [start, end): the recent ids of what was folded before a restart."""
        s = pipe.settings
        self.pipe = pipe
        self.layout = Stage1Layout.of(s)
        self.consumer, self.producer, self.outputs = consumer, producer, outputs
        self.restore_reader = restore_reader
        self.tail_reader = tail_reader
        self.dedupe_ids = s.dedupe_ids
        self.recent: dict[tuple[str, int], RecentIds] = {}
        self.sources = self.layout.sources
        self.changelogs = self.layout.changelogs
        # Turn buckets older than any window or baseline reads are closed and their partials
        # dropped; stage 2 forgets the same buckets after evaluating them.
        self.folder = Stage1Folder(pipe.cfg.hop_ms, retention_ms=pipe.cfg.retention_ms)
        self.changes = ChangeWatch()  # latency and confidence detectors of the owned partitions
        self.partials_topic = pipe.partials_topic.get_topic_name()
        self.partials_partitions = s.partials_partitions
        self.batch_size, self.within = s.batch_size, s.batch_within_s
        self.slots: dict[str, dict[str, Any]] = {}
        self.buffers: dict[tuple[str, int], deque[Any]] = {}
        self.assigned: set[tuple[str, int]] = set()
        self.next_offset: dict[tuple[str, int], int] = {}
        self.max_hold_s = max(2.0, 4 * self.within)
        self.max_buffered = 20 * self.batch_size
        self.stop = threading.Event()
        self.batches = 0
        self.commit_failures = 0
        self._errors: list[str] = []

    # -- rebalance ---------------------------------------------------------------------------

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        by_source: dict[str, list[int]] = {}
        for tp in partitions:
            by_source.setdefault(self.sources[tp.topic], []).append(tp.partition)
            self.assigned.add((tp.topic, tp.partition))
            self.pipe.stage1_assigned.add(f"{tp.topic}[{tp.partition}]")
        committed = with_retry(
            lambda: consumer.committed(partitions, timeout=10), "stage 1: reading its offsets"
        )
        for tp in committed:
            recent = self.recent[(tp.topic, tp.partition)] = RecentIds(self.dedupe_ids)
            if tp.offset >= 0:
                self.next_offset[(tp.topic, tp.partition)] = tp.offset
                if self.tail_reader is not None and self.dedupe_ids:
                    start = max(0, tp.offset - self.dedupe_ids)
                    for value in self.tail_reader(tp.topic, tp.partition, start, tp.offset):
                        eid = leading_event_id(value or b"")
                        if eid is not None:
                            recent.seen(eid)
        restored = 0
        for source, parts in by_source.items():
            for key, value in self.restore_reader(self.changelogs[source], parts):
                k = key.decode()
                if value is None:
                    self.slots.pop(k, None)
                else:
                    part = json.loads(value)
                    self.slots[k] = part
                    restored += 1
        for part in self.slots.values():
            self.folder.observe(part)
        log.info(
            "stage 1 assigned %s; %d partial(s) restored",
            [f"{tp.topic}[{tp.partition}]" for tp in partitions],
            restored,
        )

    def on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Records buffered but not folded are dropped with the partition: their offsets were
        not committed, so the next owner reads them again. Folded batches were committed."""
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assigned.discard(key)
            self.pipe.stage1_assigned.discard(f"{tp.topic}[{tp.partition}]")
            self.buffers.pop(key, None)
            self.next_offset.pop(key, None)
            self.recent.pop(key, None)
        gone = {(self.sources[tp.topic], tp.partition) for tp in partitions}
        for key in [k for k, p in self.slots.items() if (source_of(p["k"]), p["p"]) in gone]:
            del self.slots[key]
        for source, partition in gone:
            self.folder.forget(partition, source)
            self.changes.forget(source, partition)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        self.consumer.subscribe(
            list(self.sources), on_assign=self.on_assign, on_revoke=self.on_revoke
        )
        try:
            while not self.stop.is_set():
                batch = self.collect()
                if batch:
                    self.process(batch)
        finally:
            self.consumer.close()

    def collect(self) -> list[Any]:
        """The next batch: up to ``batch_size`` records, returned once full or ``within``
        seconds after the first record was buffered, taken in step across the turn partitions
        (see :meth:`take`)."""
        first: float | None = None
        blocked = False
        while not self.stop.is_set():
            buffered = sum(len(q) for q in self.buffers.values())
            if first is None and buffered:
                first = time.monotonic()
            waited = 0.0 if first is None else time.monotonic() - first
            if buffered >= self.batch_size or (first is not None and waited >= self.within):
                batch = self.take(force=waited >= self.max_hold_s or buffered >= self.max_buffered)
                if batch:
                    return batch
                blocked = True  # waiting for a partition that is behind
            wait = 0.1 if first is None else max(0.0, min(0.1, self.within - waited))
            if blocked:
                wait = max(wait, 0.02)
            room = max(1, self.batch_size - buffered) if not blocked else self.batch_size
            for msg in consume_available(self.consumer, room, wait):
                if not is_record(msg, log):
                    continue
                tp = (msg.topic(), msg.partition())
                self.buffers.setdefault(tp, deque()).append(msg)
                self.next_offset[tp] = msg.offset() + 1
        return []

    def take(self, force: bool = False) -> list[Any]:
        """Buffered records up to the event-time frontier of each windowed source (turns,
        predictions, outcomes): the smallest newest-buffered timestamp among its partitions that still
        have records to give (a partition that is caught up and has nothing buffered does not
        hold the others back; one whose records are still on the way holds its whole source).
        A producer's batch can carry a partition's whole backlog, so without this stage 1 would
        fold one partition hours ahead of the others and stage 2 would have to wait (or guess).
        Feedback does not feed time windows and is always taken. ``force`` takes
        everything (records held too long, or too many buffered)."""
        frontier: dict[str, float] = {}
        if not force:
            for tp in self.assigned:
                source = self.sources[tp[0]]
                if source not in WINDOWED_KIND:
                    continue
                q = self.buffers.get(tp)
                if q:
                    newest = q[-1].timestamp()[1]
                    frontier[source] = min(frontier.get(source, newest), newest)
                elif self._behind(tp):
                    frontier[source] = -math.inf  # wait for its next records
        batch: list[Any] = []
        for tp, q in self.buffers.items():
            limit = frontier.get(self.sources[tp[0]], math.inf)
            while q and len(batch) < self.batch_size:
                if q[0].timestamp()[1] > limit:
                    break
                batch.append(q.popleft())
        return batch

    def _behind(self, tp: tuple[str, int]) -> bool:
        low, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
        if high is None or high < 0:
            return False  # not fetched yet: unknown, do not wait on it
        # Nothing committed nor read yet: reading starts at the beginning (auto.offset.reset).
        start = self.next_offset.get(tp, low if low is not None and low >= 0 else high)
        return high > start

    def process(self, batch: list[Any]) -> None:
        pipe = self.pipe
        items: list[tuple[str, dict[str, Any], int, int]] = []
        offsets: dict[tuple[str, int], int] = {}
        counts = dict.fromkeys(SCHEMAS, 0)
        duplicates = dict.fromkeys(SCHEMAS, 0)
        decode = pipe.decoder.decode
        watch = self.changes.watch
        for msg in batch:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            source = self.sources[topic]
            offsets[(topic, partition)] = offset + 1
            rec = decode(
                topic,
                msg.key(),
                msg.value(),
                expected=SCHEMAS[source],
                partition=partition,
                offset=offset,
            )
            if rec is None:
                continue
            recent = self.recent.get((topic, partition))
            if recent is None:
                recent = self.recent[(topic, partition)] = RecentIds(self.dedupe_ids)
            if recent.seen(rec["event_id"]):
                duplicates[source] += 1
                continue
            counts[source] += 1
            items.append((source, rec, partition, offset))
            if source in (TURN, PREDICTION):  # latency and confidence: change detectors
                watch(rec, partition, source)
        folder = self.folder
        skipped, late, unattributed = folder.skipped, folder.late, folder.unattributed
        partials = folder.fold(items, self.slots.get)
        self.slots.update(partials)
        produce = self.producer.produce
        for key, part in partials.items():
            value = json.dumps(part, separators=(",", ":")).encode()
            produce(
                self.changelogs[source_of(part["k"])],
                value,
                key.encode(),
                partition=part["p"],
                on_delivery=self._delivered,
            )
            produce(
                self.partials_topic,
                value,
                json.dumps(part["g"]).encode(),
                partition=group_partition(part["g"], self.partials_partitions),
                on_delivery=self._delivered,
            )
        for key in folder.expired(self.slots.items()):
            part = self.slots.pop(key)
            produce(
                self.changelogs[source_of(part["k"])],
                None,
                key.encode(),
                partition=part["p"],
                on_delivery=self._delivered,
            )
        for schema, event, topic in change_events(self.changes.drain(), pipe.cfg.alerts):
            self.outputs.send(schema, event, topic=topic)
        self._flush()
        self._commit([TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        self.batches += 1
        m = pipe.metrics
        m.replays_skipped.inc(folder.skipped - skipped)
        m.late.inc(folder.late - late)
        m.unattributed.inc(folder.unattributed - unattributed)
        for source, n in duplicates.items():
            if n:
                m.duplicates.labels(SCHEMAS[source]).inc(n)
        for source, n in counts.items():
            if n:
                schema = SCHEMAS[source]
                m.events.labels(schema).inc(n)
                m.observe(schema, (rec for s, rec, _, _ in items if s == source))

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def _commit(self, offsets: list[TopicPartition]) -> None:
        """Commit the batch's offsets. A failure that is not fatal (the group's coordinator
        moved or forgot this member while a broker was away: UNKNOWN_MEMBER_ID, a rebalance, a
        broker unreachable) is not a reason to stop: the batch's writes are acknowledged and the
        partials carry their offsets, so if it is delivered again (here after rejoining, or to
        the partition's next owner) it is skipped. The next batch's commit covers it."""
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise
            self.commit_failures += 1
            log.warning("stage 1: offsets not committed (%s); carrying on", err.str())

    def _flush(self) -> None:
        """Every write of the batch acknowledged, or raise before its offsets are committed.
        While Kafka is away the writes wait in the producers (up to their message timeout, five
        minutes): stage 1 waits with them, saying so every 30 s, rather than giving up."""
        started = time.monotonic()
        for name, producer in (
            ("partials", self.producer),
            ("outputs", self.outputs),
            ("dead letters", self.pipe.dlq_producer_if_open()),
        ):
            if producer is None:
                continue
            said = 0.0
            while remaining := producer.flush(1.0):
                if self._errors or self.stop.is_set():
                    break
                waited = time.monotonic() - started
                if waited > FLUSH_DEADLINE_S:
                    raise RuntimeError(
                        f"stage 1: {remaining} {name} write(s) not acknowledged after {waited:.0f}s"
                    )
                if waited - said >= 30.0:
                    said = waited
                    log.warning(
                        "stage 1: waiting for Kafka to acknowledge %d %s write(s) (%.0fs)",
                        remaining,
                        name,
                        waited,
                    )
            if remaining:
                raise RuntimeError(f"stage 1: {remaining} {name} write(s) not acknowledged")
        if self._errors or self.outputs.failed:
            errors, self._errors = self._errors, []
            raise RuntimeError(f"stage 1: writes refused by the broker: {errors[:5]}")


def read_changelog(
    kafka: str | Connection, group: str
) -> Callable[[str, list[int]], Iterable[tuple[bytes, bytes | None]]]:
    """A restore reader: the records of a changelog's partitions, beginning to end."""

    def read(topic: str, partitions: list[int]) -> Iterable[tuple[bytes, bytes | None]]:
        ranges: dict[int, tuple[int, int | None]] = {p: (0, None) for p in partitions}
        for msg in clients.read_range(kafka, f"{group}-restore", topic, ranges):
            yield msg.key(), msg.value()

    return read


def read_tail(
    kafka: str | Connection, group: str
) -> Callable[[str, int, int, int], Iterable[bytes | None]]:
    """A tail reader: the values of one partition's records in [start, end)."""

    def read(topic: str, partition: int, start: int, end: int) -> Iterable[bytes | None]:
        for msg in clients.read_range(kafka, f"{group}-tail", topic, {partition: (start, end)}):
            yield msg.value()

    return read


class Stage1Service(mode.Service):
    """Runs :class:`Stage1` in a thread for as long as the Faust worker runs; an error in the
    loop crashes the worker (after its last batch was committed or not: either way nothing is
    lost, the next start replays from the committed offsets)."""

    def __init__(self, pipe: Pipeline, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipe = pipe
        self.stage1: Stage1 | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="stage1")
        self._done: asyncio.Future[None] | None = None

    def build(self) -> Stage1:
        s = self.pipe.settings
        group = Stage1Layout.of(s).group
        consumer = clients.consumer(
            s,
            group,
            {
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
                "fetch.wait.max.ms": 50,
                # Small per-partition fetches interleave the partitions in every batch, so event
                # time advances evenly across them in a backlog (a whole partition per fetch made
                # stage 2 wait, or evaluate windows that only one partition had filled).
                "max.partition.fetch.bytes": 64 * 1024,
                "socket.nagle.disable": True,
            },
        )
        producer = clients.producer(
            s,
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "socket.nagle.disable": True,
                # Ride out a broker restart (the batch is not committed until acknowledged).
                "message.timeout.ms": 300_000,
            },
        )
        outputs = EventProducer.from_settings(s)
        return Stage1(
            pipe=self.pipe,
            consumer=consumer,
            producer=producer,
            outputs=outputs,
            restore_reader=read_changelog(s.kafka, group),
            tail_reader=read_tail(s.kafka, group),
        )

    async def on_start(self) -> None:
        self.stage1 = self.build()
        loop = asyncio.get_running_loop()
        self._done = loop.run_in_executor(self._executor, self.stage1.run)

    @mode.Service.task
    async def _watch(self) -> None:
        while self._done is None:
            await asyncio.sleep(0.05)
        await self._done  # raises what the loop raised: the service (and worker) crash

    async def on_stop(self) -> None:
        if self.stage1 is not None:
            self.stage1.stop.set()
        if self._done is not None and not self._done.done():
            await asyncio.wait_for(asyncio.shield(self._done), 60)
        if self.stage1 is not None:
            self.stage1.outputs.close(raise_on_failure=False)
        self._executor.shutdown(wait=False)


def register(pipe: Pipeline) -> None:
    pipe.app.service(_bind(pipe))


def _bind(pipe: Pipeline) -> type[Stage1Service]:
    """``app.service`` instantiates a class with the app's loop/beacon; bind the pipeline."""

    class BoundStage1(Stage1Service):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(pipe, **kwargs)

    return BoundStage1
