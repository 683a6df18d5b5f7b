"""The worker's side of streamed answers: a request's generated text batched into
``InferenceChunk`` events (:class:`StreamOut`), and the listener of ``inference.cancels`` that
stops a generation nobody waits for (:class:`CancelListener`)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_END, TopicPartition

from continuum import kafka as clients
from continuum.retry import with_retry
from continuum.settings import Settings
from continuum.topics import topic_spec
from inference.streaming import ChunkBatcher, chunk_event
from producers.consumer import consume_available
from producers.schema_topic import decoder_for
from schemas.errors import DecodeError

if TYPE_CHECKING:
    from inference.worker import InferenceWorker

log = logging.getLogger(__name__)


class StreamOut:
    """One streamed request on the worker: the engine's text (from its thread) batched into
    ``InferenceChunk`` events on ``inference.chunks``, and the cancel flag the engine watches."""

    def __init__(self, worker: InferenceWorker, request: dict[str, Any]) -> None:
        assert worker._loop is not None
        self.worker, self.request, self.loop = worker, request, worker._loop
        self.request_id = str(request["request_id"])
        # One generation of the request: a crash makes the next owner generate again, and the
        # gateway tells the two apart by this id (an attempt happens once in the world).
        self.attempt = uuid.uuid4().hex
        cfg = worker.config
        self.batcher = ChunkBatcher(cfg.stream_chunk_ms, cfg.stream_chunk_tokens)
        self.topic = topic_spec("inference.chunks").full_name(worker.settings.topic_prefix)
        self.cancel = threading.Event()
        if worker._cancelled_early.pop(self.request_id, "no") is None:
            self.cancel.set()
        worker._cancels[self.request_id] = self.cancel
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def on_text(self, text: str, tokens: int) -> None:
        """From the engine (any thread)."""
        self.loop.call_soon_threadsafe(self._add, text, tokens)

    def _add(self, text: str, tokens: int) -> None:
        if self.closed:
            return
        if self.batcher.add(text, time.time() * 1000, tokens):
            self._publish()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.batcher.every_ms / 1000, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self.closed and self.batcher.due(time.time() * 1000):
            self._publish()

    def _publish(self) -> None:
        now = time.time() * 1000
        taken = self.batcher.take(now)
        if taken is None:
            return
        seq, text, tokens = taken
        w = self.worker
        event = chunk_event(
            self.request,
            self.attempt,
            seq,
            text,
            tokens,
            model_version=w.engine.model_version,
            worker_id=w.worker_id,
            now_ms=int(now),
        )
        try:  # best effort: the final response carries the whole text
            w.plain.send(
                "InferenceChunk", event, topic=self.topic, key=self.request_id, prepare=False
            )
            w.metrics.chunks.inc()
        except Exception:
            log.exception("chunk of %s not sent", self.request_id)

    def close(self) -> None:
        """Generation ended: publish what waits (text the engine reported before returning is
        already on the loop, queued ahead of this call) and stop watching for a cancel."""
        if self.closed:
            return
        if not self.cancel.is_set():
            self._publish()
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.worker._cancels.pop(self.request_id, None)


class CancelListener(threading.Thread):
    """Reads ``inference.cancels`` from its end, every partition, no consumer group (every
    worker sees every cancel), and hands each request id to ``on_cancel``."""

    def __init__(self, settings: Settings, on_cancel: Callable[[str], None]) -> None:
        super().__init__(name="cancels", daemon=True)
        self.topic = topic_spec("inference.cancels").full_name(settings.topic_prefix)
        self.on_cancel = on_cancel
        self.decoder = decoder_for(settings)
        self.consumer = clients.consumer(
            settings,
            f"continuum-cancels-{uuid.uuid4()}",  # assigned, never committed
            {"fetch.wait.max.ms": 50, "socket.nagle.disable": True},
            offset_reset="latest",
        )
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            parts = with_retry(
                lambda: clients.partitions_of(self.consumer, self.topic),
                f"inference worker: reading {self.topic}",
            )
            self.consumer.assign([TopicPartition(self.topic, p, OFFSET_END) for p in parts])
            while not self.stop_event.is_set():
                for msg in consume_available(self.consumer, 500, 0.2):
                    if msg.error() or msg.value() is None:
                        continue
                    try:
                        decoded = self.decoder.decode(msg.value())
                    except DecodeError as exc:
                        log.warning("unreadable cancel: %s", exc.reason)
                        continue
                    if decoded.schema == "InferenceCancel":
                        self.on_cancel(str(decoded.record["request_id"]))
        except Exception:  # cancels save work; answering requests goes on without them
            log.exception("cancel listener stopped")
        finally:
            self.consumer.close()
