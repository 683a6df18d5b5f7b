from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from producers.consumer import ConsumedEvent, EventConsumer
from producers.deadletter import DeadLetter
from producers.producer import EventProducer
from schemas import AvroSerializer
from tests.examples import EXAMPLES
from tests.integration.conftest import Broker, wait_for

pytestmark = pytest.mark.integration


def consume_all(
    bootstrap: str, prefix: str, topics: list[str], n: int, timeout: float = 60
) -> list[ConsumedEvent]:
    out: list[ConsumedEvent] = []
    with EventConsumer(bootstrap, f"g-{uuid.uuid4().hex[:6]}", topics, topic_prefix=prefix) as c:

        def more() -> bool:
            out.extend(c.poll(0.5))
            return len(out) >= n

        wait_for(more, timeout, interval=0, what=f"{n} events on {topics}")
        c.commit()
    return out


def raw_records(bootstrap: str, topic: str, n: int, timeout: float = 60) -> list:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    got: list = []
    try:

        def more() -> bool:
            got.extend(m for m in c.consume(100, 0.5) if not m.error())
            return len(got) >= n

        wait_for(more, timeout, interval=0, what=f"{n} records on {topic}")
    finally:
        c.close()
    return got


def test_every_event_type_round_trips_through_the_broker(broker: Broker, prefix: str) -> None:
    from continuum.topics import topic_for_schema

    with EventProducer(broker.bootstrap, topic_prefix=prefix) as p:
        for name, ev in EXAMPLES.items():
            p.send(name, ev)
    topics = [topic_for_schema(name).name for name in EXAMPLES]
    got = consume_all(broker.bootstrap, prefix, topics, len(EXAMPLES))
    assert {e.schema: e.event for e in got} == EXAMPLES
    turn = next(e for e in got if e.schema == "ChatTurn")
    assert turn.key == b"s-1" and turn.topic == f"{prefix}chat.turns"


def test_corrupt_record_goes_to_dlq_while_good_ones_flow(broker: Broker, prefix: str) -> None:
    topic = f"{prefix}chat.feedback"
    bad_semantics = AvroSerializer().encode(
        "Feedback", {**EXAMPLES["Feedback"], "rating": 9}, validate=False
    )
    with EventProducer(broker.bootstrap, topic_prefix=prefix) as p:
        p.send("Feedback", {**EXAMPLES["Feedback"], "event_id": str(uuid.uuid4())})
        p.produce_raw(topic, b"\x00\x01garbage", key=b"s-1")
        p.send("Feedback", {**EXAMPLES["Feedback"], "event_id": str(uuid.uuid4())})
        p.produce_raw(topic, bad_semantics, key=b"s-1")
        p.send("Feedback", {**EXAMPLES["Feedback"], "event_id": str(uuid.uuid4())})
    got = consume_all(broker.bootstrap, prefix, ["chat.feedback"], 3)
    assert len(got) == 3 and all(e.event["rating"] == 2 for e in got)
    letters = [
        DeadLetter.from_headers(m.key(), m.value(), m.headers())
        for m in raw_records(broker.bootstrap, topic + ".dlq", 2)
    ]
    assert [lt.value for lt in letters] == [b"\x00\x01garbage", bad_semantics]
    assert letters[0].source_topic == topic and letters[0].offset == 1
    assert (
        "truncated Confluent header" in letters[0].error or "no schema registry" in letters[0].error
    )
    assert letters[1].error.startswith("invalid Feedback: Feedback.rating: got 9")
    assert letters[1].offset == 3


def test_producer_survives_broker_restart_without_losing_acknowledged_events(
    broker: Broker, prefix: str
) -> None:
    from continuum.demo.chat import SimulatorConfig, TrafficSimulator

    delivered: list[bytes] = []
    evs = [
        e for n, e in TrafficSimulator(SimulatorConfig(turns=2000, feedback_probability=0)).events()
    ]
    p = EventProducer(
        broker.bootstrap,
        topic_prefix=prefix,
        on_delivery=lambda err, msg: err is None and delivered.append(msg.value()),
    )
    for ev in evs[:1000]:
        p.send("ChatTurn", ev, prepare=False)
    assert p.flush(60) == 0
    broker.restart()
    for ev in evs[1000:]:
        p.send("ChatTurn", ev, prepare=False)
    p.close(timeout=120)
    assert p.delivered == 2000 and p.failed == 0 and len(delivered) == 2000
    got = consume_all(broker.bootstrap, prefix, ["chat.turns"], 2000, timeout=120)
    ids = [e.event["event_id"] for e in got]
    assert len(ids) == len(set(ids)) == 2000  # idempotent producer: no duplicates either
    assert set(ids) == {e["event_id"] for e in evs}


def test_cli_creates_topics_and_emits_jsonl_with_line_numbered_errors(
    broker: Broker, tmp_path: Path
) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:6]}-"
    env_args = ["--bootstrap-servers", broker.bootstrap, "--topic-prefix", prefix]
    cli = [sys.executable, "-m", "continuum.cli"]
    out = subprocess.run(
        [*cli, "topics", "create", *env_args], capture_output=True, text=True, check=True
    )
    assert f"created  {prefix}chat.turns" in out.stdout
    desc = subprocess.run(
        [*cli, "topics", "describe", *env_args], capture_output=True, text=True, check=True
    )
    assert f"{prefix}baselines: 1 partitions; cleanup.policy=compact" in desc.stdout

    good = {k: v for k, v in EXAMPLES["ChatTurn"].items() if k not in ("event_id", "event_time")}
    lines = [
        json.dumps(good),
        json.dumps({**good, "confidence": 3}),
        "{broken json",
        json.dumps(good),
    ]
    src = tmp_path / "turns.jsonl"
    src.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    res = subprocess.run(
        [*cli, "emit", str(src), "--type", "ChatTurn", "--rejects", str(rejects), *env_args],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert (
        f"{src}:2: ChatTurn.confidence: got 3, expected a confidence between 0 and 1" in res.stderr
    )
    assert f"{src}:3: " in res.stderr
    assert "sent 2 event(s), rejected 2" in res.stdout
    assert [json.loads(x)["line"] for x in rejects.read_text().splitlines()] == [2, 3]
    got = consume_all(broker.bootstrap, prefix, ["chat.turns"], 2)
    assert all(e.event["user_query"] == good["user_query"] for e in got)
