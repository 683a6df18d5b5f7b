"""Encode output events (DriftSignal, Alert, RetrainTrigger, Baseline, Experiment) as Avro and
send them with Faust's producer, routed and keyed by the SDK's own rule (producers.producer.route)."""

from __future__ import annotations

from typing import Any

import faust

from continuum.topics import TopicSpec, topic_for_schema, topic_spec
from producers.producer import prepare_event, route
from schemas import AvroSerializer


class Outputs:
    def __init__(self, app: faust.App, prefix: str, serializer: AvroSerializer) -> None:
        self.serializer = serializer
        self.prefix = prefix
        self._topics: dict[str, Any] = {}
        self.app = app
        self.sent: dict[str, int] = {}

    def topic(self, spec: TopicSpec) -> Any:
        """The Faust topic of a declared topic (made once)."""
        t = self._topics.get(spec.name)
        if t is None:
            t = self._topics[spec.name] = self.app.topic(
                spec.full_name(self.prefix), key_serializer="raw", value_serializer="raw"
            )
        return t

    async def send(
        self, schema: str, event: dict[str, Any], topic: str | None = None
    ) -> dict[str, Any]:
        """Send ``event`` to its schema's topic, or to the declared topic ``topic``."""
        spec = topic_for_schema(schema) if topic is None else topic_spec(topic)
        record = prepare_event(event)
        name, key = route(schema, record, spec.name, self.prefix)
        value = self.serializer.encode(schema, record, topic=name)
        await self.topic(spec).send(key=None if key is None else key.encode(), value=value)
        self.sent[schema] = self.sent.get(schema, 0) + 1
        return record
