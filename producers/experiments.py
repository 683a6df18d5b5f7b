"""The one builder of ``Experiment`` events (the CLI, the simulators and the rollout announce, stop
and conclude A/B tests with it) and the follower that keeps a client's router on the live
``experiments`` topic."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from continuum import kafka as clients
from continuum.settings import Settings
from continuum.topics import topic_spec
from producers.assignment import VariantRouter
from producers.consumer import consume_available, is_record
from producers.schema_topic import decoder_for
from schemas.errors import DecodeError

log = logging.getLogger(__name__)

STATUSES = ("RUNNING", "STOPPED", "CONCLUDED")


def experiment_event(
    experiment_id: str,
    control: str,
    treatment: str,
    *,
    split_percent: float = 50.0,
    strategy: str = "STICKY",
    status: str = "RUNNING",
    min_samples: int = 100,
    alpha: float = 0.05,
    winner: str | None = None,
    name: str | None = None,
    description: str = "",
    metadata: dict[str, str] | None = None,
    event_id: str | None = None,
    event_time: int | None = None,
) -> dict[str, Any]:
    """An ``Experiment`` record; ``event_id`` / ``event_time`` are filled by the producer when
    left out (a simulator passes stable ones so a re-run updates the same experiment)."""
    if status not in STATUSES:
        raise ValueError(f"experiment status must be one of {', '.join(STATUSES)}, got {status!r}")
    ev: dict[str, Any] = {
        "experiment_id": experiment_id,
        "name": name or experiment_id,
        "control_version": control,
        "treatment_version": treatment,
        "traffic_split": split_percent,
        "strategy": strategy.upper(),
        "min_samples": min_samples,
        "alpha": alpha,
        "status": status,
        "winner": winner,
        "description": description,
        "metadata": dict(metadata or {}),
    }
    if event_id is not None:
        ev["event_id"] = event_id
    if event_time is not None:
        ev["event_time"] = event_time
    return ev


class ExperimentFollower(threading.Thread):
    """Keeps a :class:`~producers.assignment.VariantRouter` up to date from the compacted
    ``experiments`` topic, read from its beginning without a consumer group (every client sees
    every experiment). A broker outage is waited out by the client; a missing topic is said once
    and looked for again every ``retry_s``."""

    def __init__(self, settings: Settings, router: VariantRouter, *, retry_s: float = 10.0) -> None:
        super().__init__(name="experiment-follower", daemon=True)
        self.router = router
        self.topic = topic_spec("experiments").full_name(settings.topic_prefix)
        self.decoder = decoder_for(settings)
        self.consumer = clients.consumer(settings, f"continuum-experiments-{uuid.uuid4()}")
        self.retry_s = retry_s
        self.stop_event = threading.Event()
        self.assigned = threading.Event()
        self.seen = 0

    def _assign(self) -> bool:
        try:
            parts = clients.partitions_of(self.consumer, self.topic)
        except KafkaException as exc:
            log.warning("experiments: cannot read %s yet: %s", self.topic, exc)
            return False
        if not parts:
            log.warning("experiments: no topic %s; no experiment routes calls", self.topic)
            return False
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        self.assigned.set()
        return True

    def run(self) -> None:
        try:
            while not self.stop_event.is_set() and not self._assign():
                self.stop_event.wait(self.retry_s)
            while not self.stop_event.is_set():
                for msg in consume_available(self.consumer, 500, 0.2):
                    if not is_record(msg, log) or msg.value() is None:
                        continue
                    try:
                        decoded = self.decoder.decode(msg.value())
                    except DecodeError as exc:
                        log.warning("unreadable record on %s: %s", self.topic, exc.reason)
                        continue
                    if decoded.schema == "Experiment":
                        try:
                            self.router.update(decoded.record)
                        except ValueError as exc:  # its last good version keeps routing
                            log.warning("experiment ignored: %s", exc)
                        self.seen += 1
        except Exception:
            log.exception("experiment follower stopped; calls keep their last routes")
        finally:
            self.consumer.close()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout)
