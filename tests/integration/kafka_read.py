"""Read a whole topic back in tests (beginning to its current end), with headers."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition


def read_topic(bootstrap: str, topic: str) -> list[tuple[Any, list[tuple[str, bytes]]]]:
    """Every record of a topic from the beginning to its current end: (value, headers)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        ends = {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in md.partitions
        }
        c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        out: list[tuple[Any, list[tuple[str, bytes]]]] = []
        pos = {p: 0 for p in ends}
        deadline = time.monotonic() + 30
        while any(pos[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error():
                    continue
                pos[m.partition()] = m.offset() + 1
                out.append((m.value(), m.headers() or []))
        return out
    finally:
        c.close()
