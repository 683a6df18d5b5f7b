"""``EventProducer``: validate, encode and send events with an idempotent Kafka producer."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message

from continuum import kafka as clients
from continuum import logthrottle
from continuum.kafka import Connection
from continuum.settings import Settings
from continuum.topics import TopicSpec, topic_for_schema, topic_spec
from producers.pii import Redactor
from schemas.catalog import SchemaVersion, default_catalog
from schemas.serde import AvroSerializer, make_registry

log = logging.getLogger(__name__)

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,  # implies acks=all and in-order retries without duplicates
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
    "message.timeout.ms": 300_000,  # ride out a broker restart rather than fail fast
    "queue.buffering.max.messages": 200_000,
}


# For request/reply paths (inference): send at once, no compression, no Nagle delay.
LOW_LATENCY_PRODUCER: dict[str, Any] = {
    "linger.ms": 0,
    "compression.type": "none",
    "socket.nagle.disable": True,
}


@dataclass(frozen=True)
class FailedDelivery:
    topic: str
    key: bytes | None
    error: str


class DeliveryError(RuntimeError):
    """Some events were not acknowledged by the broker."""

    def __init__(self, failures: list[FailedDelivery], pending: int) -> None:
        self.failures = failures
        self.pending = pending
        first = f"; first: {failures[0].topic}: {failures[0].error}" if failures else ""
        super().__init__(
            f"{len(failures)} event(s) failed delivery and {pending} still unacknowledged{first}"
        )


def to_millis(value: Any) -> Any:
    """Accept epoch millis, a datetime or an ISO-8601 string for timestamp fields."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, str):
        try:
            return to_millis(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return value  # left for validation to report with the field name
    return value


def epoch_ms(value: Any) -> int:
    """A timestamp field as epoch millis for ordering and arithmetic (None and bad text: 0)."""
    ms = to_millis(value)
    return int(ms) if isinstance(ms, int | float) else 0


def prepare_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """Fill ``event_id`` and ``event_time`` when the caller left them out."""
    out = dict(event)
    if not out.get("event_id"):
        out["event_id"] = str(uuid.uuid4())
    if out.get("event_time") is None:
        out["event_time"] = int(time.time() * 1000)
    else:
        out["event_time"] = to_millis(out["event_time"])
    return out


class EventProducer:
    """Send Continuum events to Kafka.

    Events are validated before anything is sent (an invalid event raises
    :class:`schemas.EventValidationError` naming the field), keyed by the topic's key field (the
    session for chat events, so a session stays ordered), and produced idempotently. When the
    local queue is full the call waits for the broker (back-pressure) up to ``max_block_s``.
    ``close()`` flushes and raises :class:`DeliveryError` if any event was not acknowledged.
    """

    def __init__(
        self,
        kafka: str | Connection,
        *,
        serializer: AvroSerializer | None = None,
        topic_prefix: str = "",
        config: Mapping[str, Any] | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
        max_block_s: float = 60.0,
        client: Any = None,
        publish_schemas: bool | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        """``kafka``: a bootstrap string (plaintext) or the service's :class:`Connection`
        (``from_settings`` passes it); ``client`` replaces the confluent-kafka ``Producer`` (unit
        tests pass a fake). ``publish_schemas`` (default: with a real client and no Schema
        Registry): each writer schema goes to the ``schemas`` topic before its first record, so
        older readers can decode newer records (producers.schema_topic). ``redactor``: what
        happens to personal data in user and bot text (:mod:`producers.pii`); by default it is
        redacted with type-only placeholders (``from_settings`` applies the settings' policy
        and hash key)."""
        # Measured (benchmarks/serde_produce.py): routing librdkafka's log through Python
        # logging or asking for error-only delivery reports both cost ~10-25% throughput here,
        # so the client keeps its defaults; per-message reports are served every 1000 sends.
        real_client = client is None
        if client is None:
            conf = {
                **PRODUCER_DEFAULTS,
                "log_level": 2,  # librdkafka's stderr: critical only; errors below
                "error_cb": self._on_client_error,
                **(config or {}),
            }
            logthrottle.install()  # the error callback's lines: one per kind per 30 s
            client = clients.producer(kafka, conf)
        self._producer = client
        self.serializer = serializer or AvroSerializer(default_catalog())
        if (
            (publish_schemas if publish_schemas is not None else real_client)
            and self.serializer.registry is None
            and self.serializer.on_new_writer is None
        ):
            from producers.schema_topic import SchemaPublisher

            self.serializer.on_new_writer = SchemaPublisher(client, topic_prefix)
        self.topic_prefix = topic_prefix
        self.redactor = redactor if redactor is not None else Redactor()
        self.max_block_s = max_block_s
        self._on_delivery_user = on_delivery
        self._lock = threading.Lock()
        self.sent = 0
        self.delivered = 0
        self.failures: deque[FailedDelivery] = deque(maxlen=1000)
        self.failed = 0
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> EventProducer:
        registry = make_registry(settings)
        kwargs.setdefault("redactor", Redactor.from_settings(settings))
        return cls(
            settings.kafka,
            serializer=AvroSerializer(default_catalog(), registry),
            topic_prefix=settings.topic_prefix,
            **kwargs,
        )

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(raise_on_failure=exc[0] is None)

    # -- sending -----------------------------------------------------------------------------

    def _on_client_error(self, err: KafkaError) -> None:
        log.warning("kafka producer: %s", err)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.failures.append(FailedDelivery(msg.topic(), msg.key(), str(err)))
            log.error("delivery to %s failed: %s", msg.topic(), err)
        if self._on_delivery_user is not None:
            self._on_delivery_user(err, msg)

    def send(
        self,
        schema: str,
        event: Mapping[str, Any],
        *,
        topic: str | None = None,
        key: str | bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        prepare: bool = True,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> dict[str, Any]:
        """Validate, encode and enqueue one event; returns the event as sent (ids filled in).

        ``on_delivery`` is called for this event alone once the broker acknowledged or refused it
        (from whichever thread polls the producer)."""
        if self._closed:
            raise RuntimeError("EventProducer is closed")
        record = prepare_event(event) if prepare else event
        record = self.redactor.apply(schema, record)  # type: ignore[arg-type]
        name, routed_key = route(schema, record, topic, self.topic_prefix)
        value = self.serializer.encode(schema, record, topic=name)
        self._produce(name, value, routed_key if key is None else key, headers, on_delivery)
        return record  # type: ignore[return-value]

    def announce(self, version: SchemaVersion) -> None:
        """Publish a writer schema to the ``schemas`` topic now (for encoders that do not send
        through this producer, e.g. the streams worker's Faust outputs); no-op with a registry."""
        if self.serializer.registry is not None:
            return
        from producers.schema_topic import SchemaPublisher

        publisher = self.serializer.on_new_writer
        if not isinstance(publisher, SchemaPublisher):
            publisher = SchemaPublisher(self._producer, self.topic_prefix)
        publisher(version)

    def send_many(self, schema: str, events: Iterable[Mapping[str, Any]], **kwargs: Any) -> int:
        n = 0
        for event in events:
            self.send(schema, event, **kwargs)
            n += 1
        return n

    def produce_raw(
        self,
        topic: str,
        value: bytes | None,
        key: str | bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        """Send already-encoded bytes (dead letters, replays of archived records)."""
        self._produce(topic, value, key, headers, on_delivery)

    def dead_letter_sink(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """The :data:`producers.deadletter.DeadLetterSink` shape over this producer."""
        self._produce(topic, value, key, headers)

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: str | bytes | None,
        headers: list[tuple[str, bytes]] | None,
        callback: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        report = self._on_delivery
        if callback is not None:

            def report(err: KafkaError | None, msg: Message) -> None:
                self._on_delivery(err, msg)
                callback(err, msg)

        deadline = None
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=report)
                break
            except BufferError:
                # Local queue full: let the broker drain it (back-pressure), bounded in time.
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.max_block_s
                elif now > deadline:
                    raise TimeoutError(
                        f"producer queue still full after {self.max_block_s:.0f}s sending to "
                        f"{topic!r}: is the broker reachable?"
                    ) from None
                self._producer.poll(0.05)
        self.sent += 1
        if self.sent % 1000 == 0:
            self._producer.poll(0)

    # -- lifecycle ---------------------------------------------------------------------------

    def poll(self, timeout: float = 0) -> int:
        return self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for acknowledgements; returns how many events are still unacknowledged."""
        return self._producer.flush(timeout)

    @property
    def pending(self) -> int:
        return len(self._producer)

    def close(self, timeout: float = 60.0, *, raise_on_failure: bool = True) -> None:
        if self._closed:
            return
        pending = self.flush(timeout)
        self._closed = True
        if raise_on_failure and (pending or self.failed):
            raise DeliveryError(list(self.failures), pending)


def route(
    schema: str, record: Mapping[str, Any], topic: str | None, prefix: str
) -> tuple[str, str | None]:
    """Where an event goes and its key: ``topic`` is a declared topic's logical name (prefixed)
    or a literal topic; by default the schema's own topic; the key is the topic's key field."""
    spec = topic_for_schema(schema) if topic is None else _spec_or_none(topic)
    if spec is None:
        return str(topic), None
    k = record.get(spec.key_field) if spec.key_field else None
    return spec.full_name(prefix), None if k is None else str(k)


def _spec_or_none(topic: str) -> TopicSpec | None:
    try:
        return topic_spec(topic)
    except KeyError:
        return None
