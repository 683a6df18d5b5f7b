"""The shared consumer-side decode step: good records come out decoded, bad ones go to
``<topic>.dlq`` with the reason and the original bytes, and the stream keeps going."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from continuum.topics import DLQ_SUFFIX
from schemas.errors import DecodeError
from schemas.serde import AvroDeserializer

log = logging.getLogger(__name__)

# (topic, key, value, headers) -> None. Any producer can stand behind it: confluent-kafka's,
# Faust's, or a list in unit tests.
DeadLetterSink = Callable[[str, bytes | None, bytes | None, list[tuple[str, bytes]]], None]

H_ERROR = "dlq.error"
H_SCHEMA = "dlq.schema"
H_TOPIC = "dlq.source.topic"
H_PARTITION = "dlq.source.partition"
H_OFFSET = "dlq.source.offset"
H_TIME = "dlq.time"


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered record as read back from a DLQ topic."""

    source_topic: str
    partition: int | None
    offset: int | None
    error: str
    key: bytes | None
    value: bytes | None

    @classmethod
    def from_headers(
        cls, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> DeadLetter:
        h = {k: v.decode("utf-8", "replace") for k, v in headers or []}
        part = h.get(H_PARTITION)
        off = h.get(H_OFFSET)
        return cls(
            h.get(H_TOPIC, ""),
            int(part) if part else None,
            int(off) if off else None,
            h.get(H_ERROR, ""),
            key,
            value,
        )


class DeadLetterQueue:
    """Write undecodable records to ``<source topic>.dlq``: original key and value untouched, the
    reason and the source coordinates in headers."""

    def __init__(self, sink: DeadLetterSink) -> None:
        self._sink = sink
        self.counts: Counter[str] = Counter()

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        error: Exception | str,
        *,
        partition: int | None = None,
        offset: int | None = None,
        schema: str | None = None,
    ) -> None:
        reason = str(error) if not isinstance(error, DecodeError) else error.reason
        headers = [
            (H_ERROR, reason.encode("utf-8")),
            (H_TOPIC, topic.encode("utf-8")),
            (H_TIME, str(int(time.time() * 1000)).encode()),
        ]
        if partition is not None:
            headers.append((H_PARTITION, str(partition).encode()))
        if offset is not None:
            headers.append((H_OFFSET, str(offset).encode()))
        if schema:
            headers.append((H_SCHEMA, schema.encode()))
        self._sink(topic + DLQ_SUFFIX, key, value, headers)
        self.counts[topic] += 1
        log.warning("dead-lettered %s[%s]@%s: %s", topic, partition, offset, reason)


class SafeDecoder:
    """Decode a record or dead-letter it; never raises for bad input."""

    def __init__(self, deserializer: AvroDeserializer, dlq: DeadLetterQueue) -> None:
        self.deserializer = deserializer
        self.dlq = dlq
        self.decoded = 0

    def decode(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        expected: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any] | None:
        try:
            record = self.deserializer.decode(value or b"", expected).record
        except DecodeError as exc:
            self.dlq.send(
                topic,
                key,
                value,
                exc,
                partition=partition,
                offset=offset,
                schema=exc.schema or expected,
            )
            return None
        self.decoded += 1
        return record

    @property
    def dead_lettered(self) -> int:
        return sum(self.dlq.counts.values())
