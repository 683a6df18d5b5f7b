"""Stage 1's confluent-kafka loop with fake clients (no broker): what it writes where, in which
order relative to the commit, how it restores and skips a replay, and how it keeps the turn
partitions in step. The real-broker behaviour (SIGKILL, two workers) is in
tests/integration/test_streams.py."""

from __future__ import annotations

import json
import uuid
import zlib
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from continuum.demo.chat import SimulatorConfig, TrafficSimulator
from producers.producer import EventProducer
from schemas import AvroDeserializer, AvroSerializer
from streams.app import create_app
from streams.layout import Stage1Layout, group_partition
from streams.logic.partials import targets_of_turn
from streams.pipeline import Pipeline, key_partition
from streams.settings import StreamsSettings
from streams.stage1 import Stage1
from tests.examples import EXAMPLES
from tests.unit.fakes import FakeClient

ENC = AvroSerializer()


class Msg:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes, ts: int) -> None:
        self._t, self._p, self._o, self._v, self._ts = topic, partition, offset, value, ts

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._v

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def error(self) -> None:
        return None


class FakeConsumer:
    """Hands out queued messages; records commits; ``high`` stands for the broker's end offsets."""

    def __init__(self) -> None:
        self.queue: list[Msg] = []
        self.commits: list[list[tuple[str, int, int]]] = []
        self.high: dict[tuple[str, int], int] = {}
        self.committed_offsets: dict[tuple[str, int], int] = {}
        self.log: list[str] | None = None

    def poll(self, timeout: float) -> Msg | None:
        return self.queue.pop(0) if self.queue else None

    def consume(self, n: int, timeout: float) -> list[Msg]:
        out, self.queue = self.queue[:n], self.queue[n:]
        return out

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        self.commits.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))
        if self.log is not None:
            self.log.append("commit")

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic, tp.partition, self.committed_offsets.get((tp.topic, tp.partition), -1001)
            )
            for tp in partitions
        ]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, self.high.get((tp.topic, tp.partition), -1001)


class FakeProducer:
    def __init__(self, log: list[str]) -> None:
        self.records: list[tuple[str, bytes | None, bytes, int]] = []
        self.log = log

    def produce(
        self, topic: str, value: bytes | None, key: bytes, partition: int, on_delivery: Any
    ) -> None:
        self.records.append((topic, value, key, partition))

    def flush(self, timeout: float) -> int:
        self.log.append(f"flush {len(self.records)}")
        return 0


@pytest.fixture()
def pipe(tmp_path: Path) -> Pipeline:
    settings = StreamsSettings(
        bootstrap_servers="127.0.0.1:1",
        home=tmp_path,
        hop_s=10,
        window_s=20,
        topic_prefix="unit-",
        batch_size=500,
    )
    return create_app(settings)[1]


def layout(pipe: Pipeline) -> Stage1Layout:
    return Stage1Layout.of(pipe.settings)


def make_stage1(
    pipe: Pipeline, changelog: Iterable[tuple[bytes, bytes | None]] = (), tail: Any = None
) -> tuple[Stage1, FakeConsumer, FakeProducer, list[str]]:
    log: list[str] = []
    consumer, producer = FakeConsumer(), FakeProducer(log)
    consumer.log = log
    outputs = EventProducer("unused:1", client=FakeClient())
    restored = list(changelog)
    stage1 = Stage1(pipe, consumer, producer, outputs, lambda topic, parts: iter(restored), tail)
    dead: list[tuple] = []
    pipe.decoder.dlq._sink = lambda *a: dead.append(a)
    stage1.dead = dead  # type: ignore[attr-defined]
    return stage1, consumer, producer, log


def turn_messages(pipe: Pipeline, turns: int = 600, seed: int = 5) -> list[Msg]:
    out, offsets = [], [0] * 6
    cfg = SimulatorConfig(turns=turns, rate=100, seed=seed, feedback_probability=0)
    for schema, ev in TrafficSimulator(cfg).events():
        if schema != "ChatTurn":
            continue
        p = zlib.crc32(ev["session_id"].encode()) % 6
        out.append(
            Msg(
                layout(pipe).topics["turn"],
                p,
                offsets[p],
                ENC.encode("ChatTurn", ev),
                ev["event_time"],
            )
        )
        offsets[p] += 1
    return out


def assign_all(stage1: Stage1, consumer: FakeConsumer) -> None:
    stage1.on_assign(
        consumer,
        [TopicPartition(layout(stage1.pipe).topics["turn"], p) for p in range(6)]
        + [TopicPartition(layout(stage1.pipe).topics["feedback"], p) for p in range(3)],
    )


def _uuid(n: int) -> str:
    return str(uuid.UUID(int=n))


def test_an_event_that_reaches_the_topic_twice_is_folded_once(pipe: Pipeline) -> None:
    """A redelivered inference request answered again writes a second ChatTurn with the same
    (derived) id at another offset: folded once, counted as a duplicate; after a restart the ids
    are rebuilt from the tail of the partition, so a duplicate arriving later is still caught."""
    t = layout(pipe).topics["turn"]
    turn = ENC.encode("ChatTurn", dict(EXAMPLES["ChatTurn"], variant=None, experiment_id=None))
    other = ENC.encode(
        "ChatTurn", dict(EXAMPLES["ChatTurn"], variant=None, experiment_id=None, event_id=_uuid(5))
    )
    stage1, consumer, _, _ = make_stage1(pipe)
    assign_all(stage1, consumer)
    stage1.process([Msg(t, 0, 0, turn, 0), Msg(t, 0, 1, other, 0), Msg(t, 0, 2, turn, 0)])
    [part] = [p for k, p in stage1.slots.items() if k.startswith("turns|okla-v1.0|*")]
    assert part["st"]["n"] == 2
    assert pipe.metrics.duplicates.labels("ChatTurn")._value.get() == 1
    # A restart: committed offset 3; the tail reader hands back offsets 0..2.
    fresh = create_app(pipe.settings)[1]
    log = {(t, 0): [turn, other, turn]}
    again, consumer2, _, _ = make_stage1(
        fresh,
        [(k.encode(), json.dumps(v).encode()) for k, v in stage1.slots.items()],
        tail=lambda topic, p, start, end: log.get((topic, p), [])[start:end],
    )
    consumer2.committed_offsets = {(t, 0): 3}
    assign_all(again, consumer2)
    again.process([Msg(t, 0, 3, other, 0)])  # the second answer to request 5, much later
    [part2] = [p for k, p in again.slots.items() if k.startswith("turns|okla-v1.0|*")]
    assert part2["st"]["n"] == 2 and part2["wm"] == 1  # offsets 2 and 3 were duplicates


def test_a_batch_writes_changelog_and_partials_then_commits_and_dead_letters_garbage(
    pipe: Pipeline,
) -> None:
    stage1, consumer, producer, log = make_stage1(pipe)
    assign_all(stage1, consumer)
    turn = ENC.encode("ChatTurn", EXAMPLES["ChatTurn"])
    other = ENC.encode("ChatTurn", dict(EXAMPLES["ChatTurn"], event_id=_uuid(2)))
    t = layout(pipe).topics["turn"]
    stage1.process([Msg(t, 2, 7, turn, 0), Msg(t, 2, 8, b"garbage", 0), Msg(t, 2, 9, other, 0)])

    changelog = [r for r in producer.records if r[0] == layout(pipe).changelogs["turn"]]
    partials = [r for r in producer.records if r[0] == pipe.partials_topic.get_topic_name()]
    assert {json.loads(v)["g"] for _, v, _, _ in partials} == {"m:okla-v1.0", "x:v1-vs-v2"}
    model_all = [json.loads(v) for _, v, _, _ in partials if b"okla-v1.0|*" in v]
    assert model_all[-1]["st"]["n"] == 2 and model_all[-1]["wm"] == 9
    # Changelog partition = source partition; partials partition = where Faust's tables and
    # views look the group up.
    assert {p for _, _, _, p in changelog} == {2}
    for _, value, key, partition in partials:
        group = json.loads(value)["g"]
        assert json.loads(key) == group
        assert partition == group_partition(group, 6) == key_partition(pipe.ab_results, group)
    # Everything acknowledged before the offsets (one past the last record) are committed.
    assert log == [f"flush {len(producer.records)}", "commit"]
    assert consumer.commits == [[(t, 2, 10)]]
    assert len(stage1.dead) == 1 and stage1.dead[0][2] == b"garbage"  # type: ignore[attr-defined]
    assert "unknown wire format" in dict(stage1.dead[0][3])["dlq.error"].decode()  # type: ignore[attr-defined]


def test_a_restart_restores_the_partials_and_a_replayed_batch_counts_once(pipe: Pipeline) -> None:
    msgs = turn_messages(pipe)
    stage1, consumer, producer, _ = make_stage1(pipe)
    assign_all(stage1, consumer)
    stage1.process(msgs[:400])
    stage1.process(msgs[400:])
    before = {k: v for k, v in stage1.slots.items()}
    changelog = [
        (key, value)
        for topic, value, key, _ in producer.records
        if topic == layout(pipe).changelogs["turn"]
    ]
    # Crash after the second batch's writes, before its commit: a new process restores from the
    # changelog and is handed the second batch again.
    fresh = create_app(pipe.settings)[1]
    again, consumer2, producer2, _ = make_stage1(fresh, changelog)
    assign_all(again, consumer2)
    assert again.slots == before
    again.process(msgs[400:])
    assert again.slots == before  # nothing folded twice
    targets = sum(
        len(targets_of_turn(AvroDeserializer().decode(m.value()).record, again.folder.hop_ms))
        for m in msgs[400:]
    )
    assert again.folder.skipped == targets and again.folder.folded == 0
    resent = {json.loads(v)["s"] for t, v, _, _ in producer2.records if "partials" in t}
    assert "okla-v1.0|*" in resent  # snapshots re-sent so stage 2 hears of them regardless


def test_turn_partitions_are_taken_in_step(pipe: Pipeline) -> None:
    """Partition 0's whole backlog arrives first (one producer batch); partition 1 is still on
    its way: nothing is folded until partition 1 shows up, then only up to the earliest
    partition's newest record."""
    stage1, consumer, _, _ = make_stage1(pipe)
    t = layout(pipe).topics["turn"]
    stage1.on_assign(consumer, [TopicPartition(t, 0), TopicPartition(t, 1)])
    turn = ENC.encode("ChatTurn", EXAMPLES["ChatTurn"])
    for i in range(10):
        stage1.buffers.setdefault((t, 0), deque()).append(Msg(t, 0, i, turn, 1000 * i))
    stage1.next_offset[(t, 0)] = 10
    consumer.high = {(t, 0): 10, (t, 1): 5}
    assert stage1.take() == []  # partition 1 is behind
    for i in range(3):
        stage1.buffers.setdefault((t, 1), deque()).append(Msg(t, 1, i, turn, 1000 * i + 500))
    stage1.next_offset[(t, 1)] = 3
    taken = stage1.take()
    assert [(m.partition(), m.offset()) for m in taken] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
    ]
    # Partition 1 is now caught up and empty: it no longer holds partition 0 back.
    consumer.high[(t, 1)] = 3
    assert [m.offset() for m in stage1.take()] == list(range(3, 10))
    # force takes everything regardless.
    stage1.buffers[(t, 1)].append(Msg(t, 1, 3, turn, 0))
    consumer.high[(t, 0)] = 20
    assert stage1.take() == []
    assert len(stage1.take(force=True)) == 1


def test_collect_and_process_fold_everything_and_commit_the_end(pipe: Pipeline) -> None:
    msgs = turn_messages(pipe, turns=1500)
    stage1, consumer, _, _ = make_stage1(pipe)
    assign_all(stage1, consumer)
    consumer.queue = list(msgs)
    ends: dict[tuple[str, int], int] = {}
    for m in msgs:
        ends[(m.topic(), m.partition())] = m.offset() + 1
    consumer.high = dict(ends)
    while consumer.queue or any(stage1.buffers.values()):
        batch = stage1.collect()
        assert 0 < len(batch) <= stage1.batch_size
        stage1.process(batch)
    committed: dict[tuple[str, int], int] = {}
    for commit in consumer.commits:
        for t, p, o in commit:
            committed[(t, p)] = o
    assert committed == ends
    total = sum(
        p["st"]["n"] for p in stage1.slots.values() if p["k"] == "turns" and p["s"].endswith("|*")
    )
    assert total == len(msgs)


def test_old_turn_buckets_are_closed_and_tombstoned(pipe: Pipeline) -> None:
    """Retention = window (20 s) + 2 hops (10 s): buckets 40 s behind the newest are dropped
    from the state and the changelog; a late turn for one is counted, not folded."""
    stage1, consumer, producer, _ = make_stage1(pipe)
    assign_all(stage1, consumer)
    t = layout(pipe).topics["turn"]
    base = dict(EXAMPLES["ChatTurn"], variant=None, experiment_id=None)

    def turn_at(ms: int, offset: int) -> Msg:
        event = dict(base, event_time=ms, event_id=_uuid(offset))
        return Msg(t, 0, offset, ENC.encode("ChatTurn", event), ms)

    stage1.process([turn_at(1_000_000, 0)])
    stage1.process([turn_at(1_050_000, 1)])
    tombstones = [key for topic, value, key, _ in producer.records if value is None]
    assert tombstones == [b"turns|okla-v1.0|*|1000000|0"]
    assert all(p["b"] == 1_050_000 for p in stage1.slots.values())
    stage1.process([turn_at(1_000_500, 2)])
    assert stage1.folder.late == 1
    assert all(p["b"] == 1_050_000 for p in stage1.slots.values())


def test_consume_errors_fatal_raise_eof_is_quiet_others_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from confluent_kafka import KafkaError, KafkaException

    from producers.consumer import is_record

    class Err:
        def __init__(self, code: int, fatal: bool) -> None:
            self._code, self._fatal = code, fatal

        def error(self) -> KafkaError:
            return KafkaError(self._code, "boom", fatal=self._fatal)

    log = logging.getLogger("t")
    with caplog.at_level(logging.WARNING, logger="t"):
        assert not is_record(Err(KafkaError._PARTITION_EOF, False), log)  # type: ignore[arg-type]
        assert not caplog.records
        assert not is_record(Err(KafkaError._TRANSPORT, False), log)  # type: ignore[arg-type]
        assert "boom" in caplog.text
    with pytest.raises(KafkaException):
        is_record(Err(KafkaError._FATAL, True), log)  # type: ignore[arg-type]
    assert is_record(Msg("t", 0, 0, b"", 0), log)  # type: ignore[arg-type]


def test_predictions_and_outcomes_have_their_own_changelogs_and_model_groups(
    pipe: Pipeline,
) -> None:
    """Predictions and outcomes fold into ``p:`` groups, each partial written to its source's
    changelog on the source partition; turns on the same partition number stay apart; a
    revoked predictions partition takes its partials and detectors with it."""
    stage1, consumer, producer, log = make_stage1(pipe)
    topics = layout(pipe).topics
    stage1.on_assign(
        consumer,
        [TopicPartition(topics[s], 1) for s in ("turn", "prediction", "outcome")],
    )
    pred = ENC.encode("Prediction", EXAMPLES["Prediction"])
    outcome = ENC.encode("Outcome", EXAMPLES["Outcome"])
    turn = ENC.encode("ChatTurn", EXAMPLES["ChatTurn"])
    t0 = EXAMPLES["Prediction"]["event_time"]
    stage1.process(
        [
            Msg(topics["prediction"], 1, 4, pred, t0),
            Msg(topics["prediction"], 1, 5, b"\x00bad", t0),
            Msg(topics["outcome"], 1, 9, outcome, t0),
            Msg(topics["turn"], 1, 4, turn, t0),
        ]
    )
    by_topic: dict[str, set[tuple[str, int]]] = {}
    for topic, _value, key, partition in producer.records:
        by_topic.setdefault(topic, set()).add((key.decode().split("|")[0], partition))
    assert by_topic[layout(pipe).changelogs["prediction"]] == {("pred", 1)}
    assert by_topic[layout(pipe).changelogs["outcome"]] == {("out", 1), ("outb", 1)}
    assert by_topic[layout(pipe).changelogs["turn"]] == {("turns", 1), ("abt", 1)}
    groups = {
        json.loads(v)["g"]
        for t, v, _, _ in producer.records
        if t == pipe.partials_topic.get_topic_name()
    }
    assert groups == {"p:xgb-v2", "m:okla-v1.0", "x:v1-vs-v2"}
    assert consumer.commits == [
        sorted([(topics["outcome"], 1, 10), (topics["prediction"], 1, 6), (topics["turn"], 1, 5)])
    ]
    assert len(stage1.dead) == 1  # type: ignore[attr-defined]
    assert "truncated Confluent header" in dict(stage1.dead[0][3])["dlq.error"].decode()  # type: ignore[attr-defined]
    m = pipe.metrics
    assert m.events.labels("Prediction")._value.get() == 1
    assert m.events.labels("Outcome")._value.get() == 1
    assert ("prediction", 1, "xgb-v2", "latency_ms") in stage1.changes.detectors
    stage1.on_revoke(consumer, [TopicPartition(topics["prediction"], 1)])
    assert {p["k"] for p in stage1.slots.values()} == {"turns", "abt", "out", "outb"}
    assert not [d for d in stage1.changes.detectors if d[0] == "prediction"]
    assert ("turn", 1, "okla-v1.0", "latency_ms") in stage1.changes.detectors


def test_each_windowed_source_keeps_its_own_pace(pipe: Pipeline) -> None:
    """Turn partitions wait for each other, prediction partitions for each other; neither waits
    for the other topic, and feedback never waits."""
    stage1, consumer, _, _ = make_stage1(pipe)
    topics = layout(pipe).topics
    t, p, f = topics["turn"], topics["prediction"], topics["feedback"]
    stage1.on_assign(
        consumer,
        [TopicPartition(t, 0), TopicPartition(t, 1), TopicPartition(p, 0), TopicPartition(p, 1)]
        + [TopicPartition(f, 0)],
    )
    turn = ENC.encode("ChatTurn", EXAMPLES["ChatTurn"])
    pred = ENC.encode("Prediction", EXAMPLES["Prediction"])
    fb = ENC.encode("Feedback", EXAMPLES["Feedback"])

    def buffer(topic: str, partition: int, stamps: list[int], value: bytes) -> None:
        q = stage1.buffers.setdefault((topic, partition), deque())
        for ts in stamps:
            q.append(Msg(topic, partition, len(q), value, ts))
        stage1.next_offset[(topic, partition)] = len(q)

    buffer(t, 0, [1000, 2000, 3000], turn)  # turn partition 1 is behind: turns wait
    buffer(p, 0, [10, 20, 30], pred)  # predictions are hours older than the turns
    buffer(p, 1, [15, 25], pred)
    buffer(f, 0, [5], fb)
    consumer.high = {(t, 0): 3, (t, 1): 4, (p, 0): 3, (p, 1): 2}
    taken = sorted((m.topic(), m.partition(), m.timestamp()[1]) for m in stage1.take())
    assert taken == sorted([(p, 0, 10), (p, 0, 20), (p, 1, 15), (p, 1, 25), (f, 0, 5)])
    buffer(t, 1, [1500], turn)
    taken = sorted((m.topic(), m.partition(), m.timestamp()[1]) for m in stage1.take())
    # Turns up to partition 1's newest (1500); partition 1 of predictions is now caught up.
    assert taken == sorted([(t, 0, 1000), (t, 1, 1500), (p, 0, 30)])


def test_a_lost_membership_at_commit_is_carried_through(pipe: Pipeline) -> None:
    """The broker came back and the coordinator forgot this member: the commit fails with
    UNKNOWN_MEMBER_ID. Stage 1 carries on (the writes are acknowledged and the watermarks make
    a re-delivery exact) and the next batch's commit covers both."""
    from confluent_kafka import KafkaError, KafkaException

    msgs = turn_messages(pipe, turns=200)
    stage1, consumer, _, _ = make_stage1(pipe)
    assign_all(stage1, consumer)
    real_commit = consumer.commit
    failures = [KafkaException(KafkaError(KafkaError.UNKNOWN_MEMBER_ID))]

    def commit(offsets: list[TopicPartition], asynchronous: bool) -> None:
        if failures:
            raise failures.pop()
        real_commit(offsets, asynchronous)

    consumer.commit = commit  # type: ignore[method-assign]
    stage1.process(msgs[:100])
    assert stage1.commit_failures == 1 and consumer.commits == []
    stage1.process(msgs[:100])  # delivered again after the rejoin: skipped by the watermarks
    stage1.process(msgs[100:])
    assert len(consumer.commits) == 2
    total = sum(
        p["st"]["n"] for k, p in stage1.slots.items() if k.startswith("turns|") and "|*|" in k
    )
    assert total == len(msgs)
    # A fatal client error still stops stage 1.
    fatal = KafkaError(KafkaError._FATAL, fatal=True)
    failures.append(KafkaException(fatal))
    with pytest.raises(KafkaException):
        stage1.process(msgs[:10])
