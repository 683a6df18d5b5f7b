"""Where a gateway's answers come from: the thread that reads the reply topic, the streamed chunks
and the experiments (:class:`ReplyListener`), which feeds the A/B router
(:class:`producers.assignment.VariantRouter`, shared with the MLClient)."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from continuum import kafka as clients
from continuum.retry import with_retry
from continuum.settings import Settings
from continuum.topics import topic_spec
from inference.protocol import request_id_of
from producers.assignment import Route, VariantRouter
from producers.consumer import consume_available
from producers.schema_topic import decoder_for
from schemas.errors import DecodeError

if TYPE_CHECKING:
    from inference.gateway import Gateway

log = logging.getLogger(__name__)


class ReplyListener(threading.Thread):
    """Reads the reply topic from its current end (every partition, no consumer group: each
    gateway sees every answer) and the experiments topic from its beginning."""

    def __init__(self, settings: Settings, reply_topic: str, gateway: Gateway) -> None:
        super().__init__(name="gateway-replies", daemon=True)
        self.gateway = gateway
        self.reply_topic = reply_topic
        self.experiments_topic = (
            topic_spec("experiments").full_name(settings.topic_prefix)
            if gateway.config.follow_experiments
            else None
        )
        self.chunks_topic = topic_spec("inference.chunks").full_name(settings.topic_prefix)
        self.decoder = decoder_for(settings)
        self.consumer = clients.consumer(
            settings,
            f"continuum-gateway-{uuid.uuid4()}",  # assigned, never committed
            {
                "fetch.wait.max.ms": 10,
                "socket.nagle.disable": True,
                "fetch.min.bytes": 1,
                # inference.replies is written outside transactions; a reply topic that is a
                # transactional record (inference.responses) is read before its commit too:
                # the client gets each answer once either way (first wins).
                "isolation.level": "read_uncommitted",
            },
            offset_reset="latest",
        )
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def assign(self) -> None:
        """Assign the reply topic from its current end. A cluster that is still electing leaders
        (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE, a topic not known yet) is waited out up
        to the retry deadline."""

        def ends() -> tuple[Any, list[TopicPartition]]:
            md = self.consumer.list_topics(timeout=10)
            topic = md.topics.get(self.reply_topic)
            if topic is None or topic.error is not None:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
            tps = []
            for p in topic.partitions:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.reply_topic, p), timeout=10
                )
                tps.append(TopicPartition(self.reply_topic, p, high))
            return md, tps

        md, tps = with_retry(ends, f"gateway: reading the end of {self.reply_topic}")
        if self.chunks_topic in md.topics:  # streamed answers' text, from now on
            tps += [
                TopicPartition(self.chunks_topic, p, OFFSET_END)
                for p in md.topics[self.chunks_topic].partitions
            ]
        else:
            log.warning("no %s topic: streamed calls get their text at the end", self.chunks_topic)
        if self.experiments_topic and self.experiments_topic in md.topics:
            tps += [
                TopicPartition(self.experiments_topic, p, OFFSET_BEGINNING)
                for p in md.topics[self.experiments_topic].partitions
            ]
        self.consumer.assign(tps)

    def run(self) -> None:
        try:
            self.assign()
            self.ready.set()
            while not self.stop_event.is_set():
                for msg in consume_available(self.consumer, 500, 0.1):
                    if msg.error():
                        continue
                    self._handle(msg.topic(), msg.value(), msg.headers())
        except BaseException as exc:  # surfaced by /health and start()
            self.error = exc
            self.ready.set()
            log.exception("reply listener stopped")
        finally:
            self.consumer.close()

    def _handle(
        self, topic: str, value: bytes | None, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        if value is None:
            return
        if topic == self.reply_topic:
            rid = request_id_of(headers)
            if rid is not None:
                wanted = self.gateway.waiting(rid)
                if wanted is False:  # another gateway's call: not decoded at all
                    self.gateway.metrics.others.inc()
                    return
                if wanted is None:  # answered here already: a worker's repeat
                    self.gateway.metrics.duplicates.inc()
                    return
        try:
            decoded = self.decoder.decode(value)
        except DecodeError as exc:
            log.warning("unreadable record on %s: %s", topic, exc.reason)
            return
        if decoded.schema == "InferenceChunk":
            self.gateway.deliver_chunk(decoded.record)
        elif decoded.schema == "InferenceResponse":
            self.gateway.deliver(decoded.record)
        elif decoded.schema == "Experiment":
            try:
                self.gateway.router.update(decoded.record)
            except ValueError as exc:  # its last good version keeps routing
                log.warning("experiment ignored: %s", exc)


__all__ = ["ReplyListener", "Route", "VariantRouter"]
