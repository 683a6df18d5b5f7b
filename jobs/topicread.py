"""Read a topic from its beginning up to its end as of now (every partition, no consumer group
offsets): how the offline jobs load compacted state (baselines, registry, triggers) and history
(feedback, evaluations)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Message, TopicPartition

from continuum import kafka as clients
from continuum.kafka import Connection
from continuum.retry import with_retry
from continuum.settings import Settings
from continuum.topics import topic_spec
from schemas.serde import deserializer_for


def messages_to_end(
    kafka: str | Connection | Settings,
    name: str,
    timeout_s: float = 10.0,
    group_id: str = "continuum-read",
) -> Iterator[Message]:
    """Every message of the (full-named) topic ``name``, each partition from its beginning up to
    its end as of the call, assigned without committing. Raises when the topic is missing or the
    end is not reached within 3 x ``timeout_s``."""
    c = clients.consumer(kafka, group_id)
    try:
        md = with_retry(
            lambda: c.list_topics(name, timeout=timeout_s).topics[name], f"reading {name}"
        )
        if md.error is not None:
            raise RuntimeError(f"topic {name}: {md.error} (run `continuum topics create`)")
        ends = {
            p: with_retry(
                lambda p=p: c.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)[1],
                f"reading the end of {name}[{p}]",
            )
            for p in md.partitions
        }
        c.assign([TopicPartition(name, p, 0) for p in md.partitions])
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s * 3
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: partitions {sorted(left)} not read to the end")
            for m in c.consume(500, 0.5):
                if m.error():
                    continue
                yield m
                if m.offset() + 1 >= ends[m.partition()]:
                    left.discard(m.partition())
    finally:
        c.close()


def read_to_end(
    settings: Settings, topic: str, timeout_s: float = 10.0
) -> Iterator[dict[str, Any]]:
    """Decoded records of ``topic`` (unprefixed name) in partition order; undecodable records
    raise (these readers serve operators, who should see them)."""
    spec = topic_spec(topic)
    decoder = deserializer_for(settings)
    name = spec.full_name(settings.topic_prefix)
    for m in messages_to_end(settings, name, timeout_s, f"continuum-read-{topic}"):
        if m.value() is not None:
            yield decoder.decode(m.value(), spec.schema).record


def latest_by(
    settings: Settings, topic: str, key: str, timeout_s: float = 10.0
) -> dict[str, dict[str, Any]]:
    """The newest record per ``key`` field (a compacted topic's current state)."""
    return {rec[key]: rec for rec in read_to_end(settings, topic, timeout_s)}
