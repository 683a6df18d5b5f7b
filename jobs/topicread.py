"""Read a topic from its beginning up to its end as of now (every partition, no consumer group
offsets): how the offline jobs load compacted state (baselines, registry, triggers) and history
(feedback, evaluations)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from continuum import kafka as clients
from continuum.settings import Settings
from continuum.topics import topic_spec
from producers.schema_topic import decoder_for


def read_to_end(
    settings: Settings, topic: str, timeout_s: float = 10.0
) -> Iterator[dict[str, Any]]:
    """Decoded records of ``topic`` (unprefixed name) in partition order; undecodable records
    raise (these readers serve operators, who should see them)."""
    spec = topic_spec(topic)
    decoder = decoder_for(settings)
    name = spec.full_name(settings.topic_prefix)
    for m in clients.read_to_end(settings, name, timeout_s, f"continuum-read-{topic}"):
        if m.value() is not None:
            yield decoder.decode(m.value(), spec.schema).record


def latest_by(
    settings: Settings, topic: str, key: str, timeout_s: float = 10.0
) -> dict[str, dict[str, Any]]:
    """The newest record per ``key`` field (a compacted topic's current state)."""
    return {rec[key]: rec for rec in read_to_end(settings, topic, timeout_s)}
