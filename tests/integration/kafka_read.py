"""Read a whole topic back in tests (beginning to its current end), with headers."""

from __future__ import annotations

import uuid
from typing import Any

from continuum.kafka import read_to_end
from producers.consumer import EventConsumer


def read_topic(bootstrap: str, topic: str) -> list[tuple[Any, list[tuple[str, bytes]]]]:
    """Every record of a topic from the beginning to its current end: (value, headers)."""
    return [(m.value(), m.headers() or []) for m in read_to_end(bootstrap, topic)]


def read_all(broker: Any, prefix: str, topics: list[str], idle_polls: int = 4) -> list[Any]:
    """Every event of some topics (decoded), read until ``idle_polls`` polls in a row bring
    nothing."""
    out = []
    with EventConsumer(
        broker.bootstrap, f"read-{uuid.uuid4().hex[:6]}", topics, topic_prefix=prefix
    ) as c:
        idle = 0
        while idle < idle_polls:
            got = c.poll(0.5)
            idle = 0 if got else idle + 1
            out.extend(got)
    return out
