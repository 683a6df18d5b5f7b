"""``EventConsumer``: read Continuum topics as decoded events, dead-lettering what cannot be read.

Offsets are committed only when the caller says so (after it has acted on the events), so a crash
replays rather than loses: at-least-once, with ``event_id`` for de-duplication downstream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from continuum import kafka as clients
from continuum.kafka import Connection
from continuum.topics import TopicSpec, topic_spec
from producers.deadletter import DeadLetterQueue, SafeDecoder
from producers.producer import EventProducer
from schemas.serde import AvroDeserializer

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 10_000,
}


def consume_available(consumer: Any, max_records: int, timeout: float) -> list[Message]:
    """Wait up to ``timeout`` for the first record, then take what is already fetched (up to
    ``max_records``) without waiting. ``Consumer.consume(n, t)`` alone waits for ``n`` records
    or the whole timeout, which adds up to ``t`` of latency to every quiet-time record."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    if max_records <= 1:
        return [first]
    return [first, *consumer.consume(max_records - 1, 0)]


def is_record(msg: Message, log: logging.Logger) -> bool:
    """True for a record. A fatal client error raises; others (partition EOF aside) are logged
    and skipped, as librdkafka retries them itself."""
    err = msg.error()
    if err is None:
        return True
    if err.fatal():
        raise KafkaException(err)
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consume: %s", err)
    return False


@dataclass(frozen=True)
class ConsumedEvent:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    schema: str
    event: dict[str, Any]


class EventConsumer:
    def __init__(
        self,
        kafka: str | Connection,
        group_id: str,
        topics: Iterable[str],
        *,
        deserializer: AvroDeserializer | None = None,
        dlq_producer: EventProducer | None = None,
        topic_prefix: str = "",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """``kafka``: a bootstrap string (plaintext) or the service's :class:`Connection`."""
        conf = {**CONSUMER_DEFAULTS, **(config or {}), "group.id": group_id}
        self._consumer = clients.consumer(kafka, group_id, conf)
        self.topic_prefix = topic_prefix
        self._specs: dict[str, TopicSpec] = {}
        for name in topics:
            spec = topic_spec(name)
            self._specs[spec.full_name(topic_prefix)] = spec
        self._own_producer = dlq_producer is None
        self._dlq_producer = dlq_producer or EventProducer(kafka, topic_prefix=topic_prefix)
        self.decoder = SafeDecoder(
            deserializer or AvroDeserializer(), DeadLetterQueue(self._dlq_producer.dead_letter_sink)
        )
        self._pending: list[Message] = []
        self._consumer.subscribe(list(self._specs))

    def wait_assigned(self, timeout: float = 30.0) -> None:
        """Block until the group has given this consumer its partitions."""
        deadline = time.monotonic() + timeout
        while not self._consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partitions assigned within {timeout:.0f}s")
            for msg in self._consumer.consume(1, 0.2):
                self._pending.append(msg)

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[ConsumedEvent]:
        """Up to ``max_records`` decoded events; bad records are dead-lettered on the way."""
        out: list[ConsumedEvent] = []
        msgs = self._pending + consume_available(self._consumer, max_records, timeout)
        self._pending = []
        for msg in msgs:
            if msg.error():
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                continue
            ev = self._decode(msg)
            if ev is not None:
                out.append(ev)
        if msgs:
            self._dlq_producer.poll(0)
        return out

    def _decode(self, msg: Message) -> ConsumedEvent | None:
        topic = msg.topic()
        spec = self._specs.get(topic)
        expected = spec.schema if spec else None
        record = self.decoder.decode(
            topic,
            msg.key(),
            msg.value(),
            expected=expected,
            partition=msg.partition(),
            offset=msg.offset(),
        )
        if record is None:
            return None
        return ConsumedEvent(
            topic,
            msg.partition(),
            msg.offset(),
            msg.timestamp()[1],
            msg.key(),
            expected or "",
            record,
        )

    def commit(self) -> None:
        """Commit what was polled, once dead letters are safely written."""
        if self.decoder.dead_lettered:
            remaining = self._dlq_producer.flush(30)
            if remaining:
                raise RuntimeError(f"{remaining} dead letter(s) not acknowledged; not committing")
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                raise

    def close(self) -> None:
        try:
            self._consumer.close()
        finally:
            if self._own_producer:
                self._dlq_producer.close(raise_on_failure=False)

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
