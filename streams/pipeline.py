"""What the two stages, the alert owner and the views share: the partials topic, stage 2's tables,
the thresholds in force, the decode step, outputs, live views and metrics.

Tables hold plain JSON data. Stage 2's tables are keyed and partitioned like the partials topic
(by group); stage 1 keeps its own state (streams.stage1).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import faust

from continuum.kafka import partition_for
from continuum.topics import topic_spec
from producers.deadletter import DeadLetterQueue, SafeDecoder
from producers.producer import EventProducer
from producers.schema_topic import decoder_for
from schemas import AvroSerializer
from schemas.serde import make_registry
from streams.live import LiveState, TopicMirror
from streams.logic.evaluation import EvalConfig
from streams.logic.thresholds import check, in_force
from streams.metrics import StreamsMetrics
from streams.outputs import Outputs
from streams.settings import StreamsSettings

log = logging.getLogger(__name__)


def key_partition(table: Any, key: str) -> int:
    """The table (and partials-topic) partition of ``key``: Kafka's default partitioner on the
    serialized key, as the partials topic was keyed."""
    serialized = table.changelog_topic.prepare_key(key, None)[0]
    return partition_for(serialized, table.partitions)


def put(table: Any, key: str, value: Any, partition: int) -> None:
    """Set a table key with an explicit changelog partition."""
    table.data[key] = value
    table.send_changelog(partition, key, value)


def delete(table: Any, key: str, partition: int) -> None:
    table.data.pop(key, None)
    table.send_changelog(partition, key, None, value_serializer="raw")


class Pipeline:
    def __init__(self, app: faust.App, settings: StreamsSettings) -> None:
        self.app = app
        self.settings = settings
        p = settings.topic_prefix
        # The input partitions stage 1 (streams.stage1, its own thread and consumer group) holds
        # now, as "topic[partition]": written by stage 1, read by /health.
        self.stage1_assigned: set[str] = set()
        self.partials_topic = app.topic(
            f"{p}{settings.app_id}-partials",
            partitions=settings.partials_partitions,
            internal=True,
            key_serializer="json",
            value_serializer="json",
        )
        self.group_slots = app.Table("group-slots", partitions=settings.partials_partitions)
        self.group_state = app.Table("group-state", partitions=settings.partials_partitions)
        self.ab_results = app.Table("ab-results", partitions=settings.partials_partitions)
        # The alert owner: requests keyed by dedup key, one state per key in a changelog-backed
        # table co-partitioned with the requests (streams.agents.alerts).
        requests = topic_spec("alert-requests")
        self.alert_requests = app.topic(
            requests.full_name(p),
            partitions=requests.partitions,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.alert_book = app.Table("alert-book", partitions=requests.partitions)

        # Seed defaults < global settings (file, then CONTINUUM_THRESHOLDS) < per-model topic.
        self.global_thresholds = {
            "service_timeout_s": settings.service_timeout_s,
            **settings.global_thresholds(),
        }
        base, sources = in_force(self.global_thresholds)
        self.health_thresholds = base.health
        self.cfg = EvalConfig(
            window_ms=settings.window_s * 1000,
            hop_ms=settings.hop_s * 1000,
            freeze_after=settings.freeze_after,
            source_partitions=topic_spec("chat.turns").partitions,
            drift=base.drift,
            alerts=base.alerts,
            retrain=base.retrain,
            threshold_sources=sources,
        )
        # Predictive models: the same windows over the predictions topic's partitions.
        self.prediction_cfg = dataclasses.replace(
            self.cfg, source_partitions=topic_spec("predictions").partitions
        )
        # Stage 2's outputs frame with the registry when one is configured, else announce each
        # writer schema on the schemas topic once (through the DLQ producer) like the SDK does.
        self.serializer = AvroSerializer(registry=make_registry(settings))
        if self.serializer.registry is None:
            self.serializer.on_new_writer = lambda version: self.dlq_producer.announce(version)
        self.outputs = Outputs(app, p, self.serializer)
        self.metrics = StreamsMetrics()
        self._dlq_producer: EventProducer | None = None
        self.decoder = SafeDecoder(decoder_for(settings), DeadLetterQueue(self._dead_letter))
        self.live = LiveState()
        self.live.listeners.append(self._on_live)
        self.mirror: TopicMirror | None = None
        self.lag: dict[str, int] = {}
        self.kafka_down_since: int | None = None  # epoch ms; set by the lag watch
        self.started = time.time()

    # -- thresholds ----------------------------------------------------------------------------

    def model_overrides(self, model: str | None) -> dict[str, float]:
        """The model's overrides from the thresholds topic (a bad record is ignored with a
        warning: the CLI checks before writing, so only a hand-written record can be bad)."""
        if not model:
            return {}
        with self.live.lock:
            ev = self.live.thresholds.get(model)
        if not ev or not ev.get("values"):
            return {}
        try:
            return check(ev["values"], per_model=True)
        except ValueError as exc:
            log.warning("ignoring thresholds for %s: %s", model, exc)
            return {}

    def cfg_for(self, model: str | None, base: EvalConfig | None = None) -> EvalConfig:
        """The evaluation config in force for a model: the global one with its overrides."""
        cfg = base or self.cfg
        overrides = self.model_overrides(model)
        if not overrides:
            return cfg
        t, sources = in_force(self.global_thresholds, overrides)
        return dataclasses.replace(
            cfg, drift=t.drift, alerts=t.alerts, retrain=t.retrain, threshold_sources=sources
        )

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def dlq_producer(self) -> EventProducer:
        """Created on first use, so a worker that never sees bad input opens no extra connection."""
        if self._dlq_producer is None:
            self._dlq_producer = EventProducer(self.settings.kafka)
        return self._dlq_producer

    def dlq_producer_if_open(self) -> EventProducer | None:
        return self._dlq_producer

    def _dead_letter(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self.metrics.dlq.labels(topic.removesuffix(".dlq")).inc()
        self.dlq_producer.dead_letter_sink(topic, key, value, headers)

    def _on_live(self, schema: str, ev: dict[str, Any]) -> None:
        opened: dict[str, int] = {}
        for a in self.live.alerts_open.values():
            opened[a["severity"]] = opened.get(a["severity"], 0) + 1
        self.metrics.on_live(schema, ev, opened)

    def start_mirror(self) -> None:
        self.mirror = TopicMirror(
            self.settings.kafka,
            self.settings.topic_prefix,
            self.live,
            lambda *letter: self.dlq_producer.dead_letter_sink(*letter),
            settings=self.settings,
        )
        self.mirror.start()
