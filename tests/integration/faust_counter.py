"""A minimal Faust app for the broker-compatibility test: it reads chat.turns through the shared
decode step (bad records to the DLQ) and counts turns per model in a changelog-backed table."""

from __future__ import annotations

import os

import faust

from producers.deadletter import DeadLetterQueue, SafeDecoder
from schemas import AvroDeserializer

PREFIX = os.environ["PROBE_PREFIX"]
app = faust.App(
    f"{PREFIX}probe",
    broker=f"kafka://{os.environ['PROBE_BOOTSTRAP']}",
    store="memory://",
    web_enabled=False,
    topic_partitions=6,
    broker_session_timeout=6,
    broker_commit_interval=0.5,
    producer_acks=-1,
)
turns = app.topic(f"{PREFIX}chat.turns", value_serializer="raw", key_serializer="raw")
counts = app.Table("turns-per-model", default=int, partitions=6)
dlq_topic_producer: list = []


def _sink(topic: str, key: bytes | None, value: bytes | None, headers: list) -> None:
    dlq_topic_producer.append((topic, key, value, headers))


decoder = SafeDecoder(AvroDeserializer(), DeadLetterQueue(_sink))


@app.agent(turns)
async def count(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        record = decoder.decode(event.message.topic, event.key, event.value, expected="ChatTurn")
        if record is None:
            continue
        counts[record["model_version"]] += 1
        print(f"COUNT {sum(counts.values())}", flush=True)


if __name__ == "__main__":
    app.main()
