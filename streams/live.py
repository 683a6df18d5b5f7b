"""Materialised views of the output and control topics, kept by every worker.

A background thread reads drift-signals, alerts, retrain-triggers, baselines and experiments from
the beginning (compacted or bounded topics) with its own non-group consumer, so any worker can
answer list views and every worker knows every baseline and experiment."""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from continuum import kafka as clients
from continuum.kafka import Connection
from continuum.retry import with_retry
from continuum.settings import Settings
from continuum.topics import topic_spec
from producers.deadletter import DeadLetterQueue, SafeDecoder
from producers.schema_topic import decoder_for
from schemas.serde import deserializer_for
from streams.logic.alerts import brief as alert_brief

log = logging.getLogger(__name__)

MIRRORED = (
    "drift-signals",
    "alerts",
    "retrain-triggers",
    "baselines",
    "experiments",
    "inference.heartbeats",
    "evaluations",
    "model-registry",
    "thresholds",
)


class LiveState:
    """Plain dictionaries updated from events; read by the web views and the metrics."""

    def __init__(self, history: int = 5000) -> None:
        self.lock = threading.Lock()
        self.baselines: dict[str, dict[str, Any]] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.signals: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.signal_history: deque[dict[str, Any]] = deque(maxlen=history)
        self.alerts_open: dict[str, dict[str, Any]] = {}
        self.alert_history: deque[dict[str, Any]] = deque(maxlen=1000)
        self.alert_counts: Counter[str] = Counter()
        self.triggers: dict[str, dict[str, Any]] = {}
        self.heartbeats: dict[str, int] = {}  # inference worker id -> last heartbeat (epoch ms)
        self.workers: dict[str, dict[str, Any]] = {}
        self.evaluations: dict[str, dict[str, Any]] = {}  # model version -> newest evaluation
        self.registry: dict[str, dict[str, Any]] = {}  # model version -> registry state
        self.thresholds: dict[str, dict[str, Any]] = {}  # model version -> overrides event
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []

    def apply(self, schema: str, ev: dict[str, Any]) -> None:
        with self.lock:
            if schema == "Baseline":
                self.baselines[ev["model_version"]] = ev
            elif schema == "Experiment":
                self.experiments[ev["experiment_id"]] = ev
            elif schema == "DriftSignal":
                key = (
                    ev["model_version"],
                    ev.get("variant") or "*",
                    ev["signal"],
                    ev.get("detector", "window"),
                )
                self.signals[key] = ev
                self.signal_history.append(
                    {
                        k: ev[k]
                        for k in (
                            "event_time",
                            "model_version",
                            "variant",
                            "signal",
                            "detector",
                            "value",
                            "baseline",
                            "change",
                            "threshold",
                            "breached",
                        )
                    }
                )
            elif schema == "Alert":
                brief = alert_brief(ev, detailed=True)
                self.alert_history.append(brief)
                if ev["status"] == "OPEN":
                    self.alerts_open[ev["dedup_key"]] = brief
                    self.alert_counts[f"{ev['alert_type']}/{ev['severity']}"] += 1
                else:
                    self.alerts_open.pop(ev["dedup_key"], None)
            elif schema == "EvaluationResult":
                current = self.evaluations.get(ev["model_version"])
                if current is None or ev["event_time"] >= current["event_time"]:
                    self.evaluations[ev["model_version"]] = ev
            elif schema == "ModelVersion":
                self.registry[ev["model_version"]] = ev
            elif schema == "Thresholds":
                self.thresholds[ev["model_version"]] = ev
            elif schema == "RetrainTrigger":
                self.triggers[ev["trigger_id"]] = ev
            elif schema == "WorkerHeartbeat":
                if ev["status"] == "STOPPED":  # stopped on purpose: not a failure
                    self.heartbeats.pop(ev["worker_id"], None)
                    self.workers.pop(ev["worker_id"], None)
                elif ev["event_time"] >= self.heartbeats.get(ev["worker_id"], 0):
                    self.heartbeats[ev["worker_id"]] = int(ev["event_time"])
                    self.workers[ev["worker_id"]] = ev
        for fn in self.listeners:
            fn(schema, ev)


class TopicMirror(threading.Thread):
    def __init__(
        self,
        kafka: str | Connection,
        prefix: str,
        state: LiveState,
        dlq_sink: Any,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(name="continuum-mirror", daemon=True)
        self.state = state
        self.prefix = prefix
        self._stop_event = threading.Event()
        self._consumer = clients.consumer(kafka, "continuum-mirror-unused")
        self._names = {topic_spec(n).full_name(prefix): topic_spec(n) for n in MIRRORED}
        self.decoder = SafeDecoder(
            decoder_for(settings) if settings is not None else deserializer_for(),
            DeadLetterQueue(dlq_sink),
        )
        self.ready = threading.Event()

    def _assign(self) -> None:
        md = with_retry(lambda: self._consumer.list_topics(timeout=10), "views: listing topics")
        tps = [
            TopicPartition(name, p, OFFSET_BEGINNING)
            for name in self._names
            if name in md.topics
            for p in md.topics[name].partitions
        ]
        self._consumer.assign(tps)

    def run(self) -> None:
        try:
            self._assign()
            idle = 0
            while not self._stop_event.is_set():
                msgs = self._consumer.consume(500, 0.5)
                if not msgs:
                    idle += 1
                    if idle >= 2:
                        self.ready.set()
                    continue
                for m in msgs:
                    if m.error():
                        continue
                    spec = self._names.get(m.topic())
                    rec = self.decoder.decode(
                        m.topic(),
                        m.key(),
                        m.value(),
                        expected=spec.schema if spec else None,
                        partition=m.partition(),
                        offset=m.offset(),
                    )
                    if rec is not None and spec is not None:
                        self.state.apply(spec.schema or "", rec)
        except Exception:  # the views go stale, the pipeline does not stop
            log.exception("topic mirror stopped")
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
