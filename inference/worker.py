"""The inference worker: ``inference.requests`` -> engine -> reply topic (+ a ``ChatTurn``).

Many requests are in flight at once (``max_inflight``) so the engine can batch; a request's offset
is committed only after its response was acknowledged by the broker, and out-of-order completions
are recorded in the commit metadata (:mod:`inference.offsets`), so after a crash the next owner
answers exactly the requests that were not answered. A request id seen again while in flight or
recently answered is not generated twice. Requests past their deadline get a ``timeout`` error
without generating; malformed ones get an ``invalid_request`` error and a dead letter.

Two lanes (:mod:`inference.lanes`): user requests on ``inference.requests``, background ones (the
LLM-as-judge, evaluation runs) on ``inference.requests.background``; engine slots go to users
first, a user request preempts a background generation rather than wait for it, and background
answers make no ``ChatTurn`` (they are not chatbot turns).

Streamed requests (``stream``) publish their text as it is generated, batched into
``InferenceChunk`` events on ``inference.chunks`` (every ``stream_chunk_ms`` or
``stream_chunk_tokens``), before the usual response; an ``InferenceCancel`` on
``inference.cancels`` (the client went away) stops the generation within a token, and the answer
ends ``cancelled`` (no ``ChatTurn``: the turn did not happen for the user).

Size: one class (~560 lines) whose methods share one request's bookkeeping (the offset book,
the in-flight and answered ids, the two commit paths); its streamed-answer and cancel parts live
in :mod:`inference.worker_stream`, the transactions in :mod:`inference.transactions`.

Threads: the event loop owns the engine calls and the bookkeeping; one thread runs the blocking
``consume()`` (rebalance callbacks run there too), one serves the producer's delivery reports.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from continuum import kafka as clients
from continuum.retry import with_retry
from continuum.settings import Settings
from continuum.topics import topic_spec
from inference.engines.base import Engine, EngineError
from inference.lanes import BACKGROUND, BACKGROUND_TOPIC, USER, LaneScheduler, lane_of_topic
from inference.metrics import LlmMetrics
from inference.offsets import OffsetBook
from inference.protocol import (
    ERR_ENGINE,
    ERR_INVALID,
    ERR_TIMEOUT,
    GenerationRequest,
    GenerationResult,
    InvalidRequest,
    generation_request,
    now_ms,
    request_id_headers,
    response_event,
    turn_event,
)
from inference.transactions import Transactions, fault_hook
from inference.worker_stream import CancelListener, StreamOut
from producers.consumer import consume_available, is_record
from producers.deadletter import DeadLetterQueue
from producers.producer import LOW_LATENCY_PRODUCER, EventProducer
from producers.schema_topic import decoder_for
from schemas.catalog import default_catalog
from schemas.errors import DecodeError, EventValidationError
from schemas.ids import RecentIds
from schemas.validation import validate_event

log = logging.getLogger(__name__)

REQUESTS = "inference.requests"


@dataclass(frozen=True)
class WorkerConfig:
    group_id: str = "continuum-inference"
    worker_id: str = ""
    max_inflight: int = 0  # 0: twice the engine's concurrency, so a slot never waits on Kafka
    emit_turns: bool = True
    answer_unrouted: bool = True  # answer requests that name no model
    drain_timeout_s: float = 60.0
    session_timeout_ms: int = 10_000
    remember_ids: int = 50_000
    heartbeat_s: float = 5.0
    stream_chunk_ms: float = 25.0  # a streamed answer's text is published at most this often
    stream_chunk_tokens: int = 16  # ... or as soon as this many tokens wait
    follow_cancels: bool = True  # read inference.cancels (every worker reads all of them)
    transactions: bool = True  # answers, measurements and offsets in one Kafka transaction
    transaction_interval_ms: float = 50.0  # how often the open transaction is committed
    # A crashed worker's open transaction is aborted by the broker after this (sooner when the
    # same worker id starts again): until then read_committed readers wait at it.
    transaction_timeout_ms: int = 30_000
    # Engine slots background requests may hold at once (0: all; a user request preempts them).
    background_slots: int = 0
    background_inflight: int = 0  # background records taken from Kafka at once (0: 2 x slots)
    serve_background: bool = True  # also consume inference.requests.background


class InferenceWorker:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        config: WorkerConfig | None = None,
        *,
        metrics: LlmMetrics | None = None,
        producer: EventProducer | None = None,
        consumer_factory: Callable[[dict[str, Any]], Any] = Consumer,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.config = config or WorkerConfig()
        # The host name by default: a restarted container keeps its id, so the streams health
        # check sees the same worker come back rather than one dead and one new.
        self.worker_id = self.config.worker_id or socket.gethostname()
        self.metrics = metrics or LlmMetrics()
        self.max_inflight = self.config.max_inflight or 2 * engine.max_concurrency
        self.transactional_id = (
            f"{settings.topic_prefix}{self.config.group_id}-{self.worker_id}"
            if self.config.transactions and producer is None
            else None
        )
        self._producer: EventProducer | None = None
        if self.transactional_id is not None:
            # Answers, their ChatTurns, dead letters and offsets go through the transactional
            # producer (made by Transactions at run time); heartbeats and streamed chunks (not
            # part of an answer's exactly-once bookkeeping, and wanted at once) through this one.
            self.plain = EventProducer.from_settings(settings, config=LOW_LATENCY_PRODUCER)
        else:
            self._producer = producer or EventProducer.from_settings(
                settings, config=LOW_LATENCY_PRODUCER
            )
            self.plain = self._producer
        self.txn: Transactions | None = None
        self.txn_failed: BaseException | None = None
        self.deserializer = decoder_for(settings)
        self.topic = topic_spec(REQUESTS).full_name(settings.topic_prefix)
        self.background_topic = topic_spec(BACKGROUND_TOPIC).full_name(settings.topic_prefix)
        # Each lane's record of its answers (read_committed readers: stage 1, the archive).
        self.records = {
            USER: topic_spec("inference.responses").full_name(settings.topic_prefix),
            BACKGROUND: topic_spec("inference.responses.background").full_name(
                settings.topic_prefix
            ),
        }
        self.lanes = LaneScheduler(engine.max_concurrency, self.config.background_slots or None)
        self.background_inflight = (
            self.config.background_inflight or 2 * self.lanes.background_slots
        )
        self._background_paused = False
        self._consumer_factory = consumer_factory
        self._consumer: Any = None
        self._book = OffsetBook()
        self._lock = threading.Lock()  # the book is touched by the loop and the consume thread
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._running: dict[str, asyncio.Future[None]] = {}  # request id -> its answer
        self._cancels: dict[str, threading.Event] = {}  # streamed requests being generated
        self._cancelled_early: OrderedDict[str, None] = OrderedDict()  # cancels seen first
        self.cancels: CancelListener | None = None
        self._answered = RecentIds(self.config.remember_ids)
        self._stopping = asyncio.Event()
        self._room = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commit_scheduled = False
        self.assigned: set[tuple[str, int]] = set()
        self.answered = 0
        self.skipped = 0
        self.ready = threading.Event()

    @property
    def producer(self) -> EventProducer:
        """The producer of answers: the transactional one while transactions run."""
        if self.txn is not None:
            producer: EventProducer = self.txn.producer
            return producer
        assert self._producer is not None
        return self._producer

    def _answer_producers(self) -> list[EventProducer]:
        """The producers of answers: the transactional slots' while transactions run (made
        again after a fatal error, so asked each time), else the one plain producer."""
        if self.txn is not None:
            return list(self.txn.producers)
        return [self._producer] if self._producer is not None else []

    def _transactional_producer(self, slot: int) -> EventProducer:
        assert self.transactional_id is not None
        return EventProducer.from_settings(
            self.settings,
            config={
                **LOW_LATENCY_PRODUCER,
                # Slot 0 keeps the worker's id (an incarnation before slots is fenced too).
                "transactional.id": self.transactional_id + (f".{slot}" if slot else ""),
                "transaction.timeout.ms": self.config.transaction_timeout_ms,
                # A write not delivered within a transaction's life fails it (it is aborted and
                # produced again: see inference.transactions).
                "message.timeout.ms": self.config.transaction_timeout_ms,
            },
        )

    def _txn_done(self, task: asyncio.Future[None]) -> None:
        """The commit loop ended: on an error the worker stops (answers could no longer be
        committed), and exits with that error."""
        if not task.cancelled() and task.exception() is not None:
            self.txn_failed = task.exception()
            log.error("transactions stopped: %s; stopping the worker", self.txn_failed)
            self._stopping.set()

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to finish: stop consuming, drain in-flight requests, commit, exit."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.engine.start()
        self.metrics.set_model(self.engine.info())
        polling = threading.Event()
        poller = threading.Thread(
            target=self._serve_deliveries, args=(polling,), name="producer-poll", daemon=True
        )
        poller.start()
        kafka = ThreadPoolExecutor(1, thread_name_prefix="consume")
        self._consumer = self._consumer_factory(
            clients.client_config(
                self.settings,
                {
                    "socket.nagle.disable": True,
                    "fetch.wait.max.ms": 100,
                    "group.id": self.config.group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    "session.timeout.ms": self.config.session_timeout_ms,
                    "on_commit": self._on_commit,
                },
            )
        )
        txn_task: asyncio.Future[None] | None = None
        if self.transactional_id is not None:
            self.txn = Transactions(
                self._transactional_producer,
                offsets=self._offsets_to_commit,
                committed=self._offsets_committed,
                group_metadata=lambda: self._consumer.consumer_group_metadata(),
                interval_ms=self.config.transaction_interval_ms,
                before_commit=fault_hook(),
            )
            await self.txn.start()  # fences this worker's previous incarnation
            txn_task = asyncio.ensure_future(self.txn.run(self._stopping))
            txn_task.add_done_callback(self._txn_done)
        topics = [self.topic] + ([self.background_topic] if self.config.serve_background else [])
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info(
            "inference worker %s: %s on %s%s",
            self.worker_id,
            self.engine.info(),
            self.topic,
            f" (transactional id {self.transactional_id})" if self.transactional_id else "",
        )
        beating = asyncio.ensure_future(self._heartbeats())
        if self.config.follow_cancels:
            self.cancels = CancelListener(self.settings, self.cancel)
            self.cancels.start()
        try:
            await self._consume(kafka)
        finally:
            beating.cancel()
            if self.cancels is not None:
                self.cancels.stop_event.set()
            await self._drain()
            if self.txn is not None:
                if txn_task is not None and not txn_task.done():
                    await asyncio.wait({txn_task})
                if self.txn_failed is None:
                    await self.txn.close()
            else:
                self._commit(sync=True)
            await self._loop.run_in_executor(kafka, self._consumer.close)
            kafka.shutdown()
            self._heartbeat("STOPPED")
            self.plain.flush(10)
            polling.set()
            poller.join()
            answers = self._answer_producers()
            for producer in answers:
                producer.close(raise_on_failure=False)
            if self.plain not in answers:
                self.plain.close(raise_on_failure=False)
            await self.engine.stop()
            self.metrics.unload()
            log.info("inference worker %s stopped: %d answered", self.worker_id, self.answered)
        if self.txn_failed is not None:
            raise self.txn_failed

    async def _consume(self, kafka: ThreadPoolExecutor) -> None:
        assert self._loop is not None
        self.ready.set()
        while not self._stopping.is_set():
            # Background records wait in Kafka once their share is taken: user records always
            # have room (max_inflight of their own).
            full = len(self._background) >= self.background_inflight
            if full != self._background_paused:
                await self._loop.run_in_executor(kafka, self._pause_background, full)
            room = self.max_inflight + len(self._background) - len(self._tasks)
            if room <= 0:
                self._room.clear()
                waiter = asyncio.ensure_future(self._room.wait())
                stopper = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            msgs = await self._loop.run_in_executor(
                kafka, consume_available, self._consumer, room, 0.1
            )
            for msg in msgs:
                if is_record(msg, log):
                    self._start(msg)

    def _pause_background(self, pause: bool) -> None:
        """Pause (or resume) the background lane's partitions; on the consume thread."""
        self._background_paused = pause
        parts = [TopicPartition(t, p) for t, p in self.assigned if t == self.background_topic]
        if parts:
            (self._consumer.pause if pause else self._consumer.resume)(parts)

    async def _drain(self) -> None:
        if not self._tasks:
            return
        log.info("draining %d in-flight request(s)", len(self._tasks))
        done, pending = await asyncio.wait(self._tasks, timeout=self.config.drain_timeout_s)
        for task in pending:  # not committed: the next owner answers them
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _heartbeats(self) -> None:
        while True:
            self._heartbeat("RUNNING")
            await asyncio.sleep(self.config.heartbeat_s)

    def _heartbeat(self, status: str) -> None:
        """Tell the streams health check this worker is alive (or stopped on purpose)."""
        try:
            self.plain.send(
                "WorkerHeartbeat",
                {
                    "worker_id": self.worker_id,
                    "model_version": self.engine.model_version,
                    "engine": self.engine.name,
                    "status": status,
                    "inflight": len(self._tasks),
                    "answered": self.answered,
                    "interval_ms": int(self.config.heartbeat_s * 1000),
                },
            )
        except Exception:  # a missed heartbeat must never stop the worker
            log.exception("heartbeat not sent")

    def _serve_deliveries(self, stop: threading.Event) -> None:
        while not stop.is_set():
            answers = self._answer_producers()
            try:
                for i, producer in enumerate(answers):
                    producer.poll(0.05 if i == 0 else 0)
                if self.plain not in answers:
                    self.plain.poll(0 if answers else 0.05)
            except KafkaException as exc:  # a producer replaced after a fatal error
                log.debug("poll: %s", exc)
                time.sleep(0.05)

    # -- rebalance and commits ---------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        committed = with_retry(
            lambda: consumer.committed(partitions, timeout=10), "inference worker: reading offsets"
        )
        with self._lock:
            for tp in committed:
                self._book.assign(tp.topic, tp.partition, tp.offset, tp.metadata)
                self.assigned.add((tp.topic, tp.partition))
        if self._background_paused:  # a new assignment starts unpaused
            consumer.pause([tp for tp in partitions if tp.topic == self.background_topic])
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in committed])

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if self.txn is not None and self._loop is not None and not self._loop.is_closed():
            # What was answered on these partitions commits now, with its offsets, while this
            # worker still owns them.
            done = asyncio.run_coroutine_threadsafe(self.txn.flush(), self._loop)
            try:
                done.result(self.config.transaction_timeout_ms / 1000)
            except Exception as exc:
                log.warning("transaction not committed on revoke: %s", exc)
        elif self.txn is None:
            self._commit(sync=True, consumer=consumer)
        with self._lock:
            for tp in partitions:
                self._book.revoke(tp.topic, tp.partition)
                self.assigned.discard((tp.topic, tp.partition))

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None:
            log.warning("offset commit failed (will retry): %s", err)
            return
        with self._lock:
            for tp in partitions:
                if tp.error is None:
                    self._book.committed(tp.topic, tp.partition, tp.offset, tp.metadata or "")

    def _offsets_to_commit(self) -> list[tuple[str, int, int, str]]:
        with self._lock:
            return self._book.to_commit()

    def _offsets_committed(self, offsets: list[tuple[str, int, int, str]]) -> None:
        with self._lock:
            for t, p, o, m in offsets:
                self._book.committed(t, p, o, m)

    def _commit(self, *, sync: bool = False, consumer: Any = None) -> None:
        self._commit_scheduled = False
        consumer = consumer or self._consumer
        with self._lock:
            todo = self._book.to_commit()
        if not todo or consumer is None:
            return
        offsets = [TopicPartition(t, p, o, metadata=m) for t, p, o, m in todo]
        try:
            if sync:
                result = consumer.commit(offsets=offsets, asynchronous=False)
                self._on_commit(None, result or [])
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.warning("offset commit failed: %s", exc)

    def _commit_soon(self) -> None:
        if not self._commit_scheduled and self._loop is not None:
            self._commit_scheduled = True
            self._loop.call_later(0.005, self._commit)

    # -- cancels -----------------------------------------------------------------------------

    def cancel(self, request_id: str) -> None:
        """Stop generating ``request_id`` (thread-safe): its client went away."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel, request_id)

    def _cancel(self, request_id: str) -> None:
        event = self._cancels.get(request_id)
        if event is not None:
            event.set()
            return
        # Not generating here (yet): remembered a while, so a request still queued is skipped.
        self._cancelled_early[request_id] = None
        while len(self._cancelled_early) > 10_000:
            self._cancelled_early.popitem(last=False)

    # -- one request -------------------------------------------------------------------------

    def _start(self, msg: Message) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        with self._lock:
            fresh = self._book.begin(topic, partition, offset)
        if not fresh:  # answered before a crash; the commit metadata says so
            self.skipped += 1
            self.metrics.redeliveries.inc()
            return
        background = topic == self.background_topic
        task = asyncio.ensure_future(self._handle(msg))
        self._tasks.add(task)
        if background:
            self._background.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._background.discard(task)
        self._room.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("request handler failed", exc_info=task.exception())

    async def _handle(self, msg: Message) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        acked = await self._answer(msg)
        if acked:
            with self._lock:
                self._book.finish(topic, partition, offset)
            if self.txn is None:
                self._commit_soon()

    async def _answer(self, msg: Message) -> bool:
        """Answer one record; True once everything it produced is acknowledged."""
        try:
            decoded = self.deserializer.decode(
                msg.value() or b"", "InferenceRequest", validate=False
            )
            request = decoded.record
        except DecodeError as exc:
            return await self._dead_letter(msg, exc.reason)
        request_id = str(request.get("request_id") or "")
        model = request.get("model")
        if model not in (None, self.engine.model_version) or (
            model is None and not self.config.answer_unrouted
        ):
            return True  # another model's worker (its own consumer group) answers it
        if request_id in self._answered:
            self.skipped += 1
            self.metrics.redeliveries.inc()
            return True
        running = self._running.get(request_id)
        if running is not None:  # same id already being answered: answer once
            self.skipped += 1
            self.metrics.redeliveries.inc()
            await asyncio.shield(running)
            return True
        assert self._loop is not None
        done: asyncio.Future[None] = self._loop.create_future()
        self._running[request_id] = done
        try:
            return await self._generate_and_reply(msg, request)
        finally:
            self._running.pop(request_id, None)
            self._answered.seen(request_id)
            done.set_result(None)

    async def _generate_and_reply(self, msg: Message, request: dict[str, Any]) -> bool:
        version = self.engine.model_version
        lane = lane_of_topic(msg.topic(), self.settings.topic_prefix)
        try:
            validate_event(default_catalog().current("InferenceRequest"), request)
            gen = generation_request(request)
        except (EventValidationError, InvalidRequest) as exc:
            reply = response_event(
                request,
                model_version=version,
                worker_id=self.worker_id,
                error=(ERR_INVALID, str(exc)),
            )
            sent = await self._reply(request, reply, lane)
            return await self._dead_letter(msg, f"invalid InferenceRequest: {exc}") and sent
        if gen.deadline_ms is not None and now_ms() > gen.deadline_ms:
            late = now_ms() - gen.deadline_ms
            reply = response_event(
                request,
                model_version=version,
                worker_id=self.worker_id,
                error=(ERR_TIMEOUT, f"deadline passed {late} ms before generation started"),
            )
            return await self._reply(request, reply, lane)
        stream = StreamOut(self, request) if request.get("stream") else None
        self.metrics.active.inc()
        try:
            result = await self._generate(gen, lane, stream)
            if stream is not None:
                stream.close()
        except InvalidRequest as exc:
            reply = response_event(
                request,
                model_version=version,
                worker_id=self.worker_id,
                error=(ERR_INVALID, str(exc)),
            )
        except (EngineError, RuntimeError, ValueError) as exc:
            log.exception("engine failed on %s", gen.request_id)
            reply = response_event(
                request,
                model_version=version,
                worker_id=self.worker_id,
                error=(ERR_ENGINE, f"{type(exc).__name__}: {exc}"),
            )
        else:
            if result.finish_reason == "cancelled":
                self.metrics.cancelled.inc()
                reply = response_event(
                    request, model_version=version, worker_id=self.worker_id, result=result
                )
                # Nobody reads this answer and the turn did not happen for the user: no ChatTurn.
                return await self._reply(request, reply, lane, turn=False)
            if result.finish_reason == "timeout":
                reply = response_event(
                    request,
                    model_version=version,
                    worker_id=self.worker_id,
                    error=(ERR_TIMEOUT, "deadline passed during generation"),
                    now=result.finished_ms,
                )
            else:
                reply = response_event(
                    request, model_version=version, worker_id=self.worker_id, result=result
                )
        finally:
            self.metrics.active.dec()
            if stream is not None:
                stream.close()
        return await self._reply(request, reply, lane, turn=lane == USER)

    async def _generate(
        self, gen: GenerationRequest, lane: str, stream: StreamOut | None
    ) -> GenerationResult:
        """Generate in an engine slot of the request's lane; a background generation preempted
        by a user request is run again once a slot is free for it."""
        self.metrics.lane_requests.labels(lane).inc()
        while True:
            slot = await self.lanes.acquire(lane)
            try:
                if stream is not None:
                    return await self.engine.generate(
                        gen, on_text=stream.on_text, cancel=stream.cancel
                    )
                cancel = slot.preempt if lane == BACKGROUND else None
                result = await self.engine.generate(gen, cancel=cancel)
            finally:
                self.lanes.release(slot)
            if not (slot.preempted and result.finish_reason == "cancelled"):
                return result
            self.metrics.preemptions.inc()
            log.debug("background request %s preempted; it runs again later", gen.request_id)

    async def _reply(
        self, request: dict[str, Any], reply: dict[str, Any], lane: str, turn: bool = True
    ) -> bool:
        """The answer to its lane's record topic (with its ChatTurn), and, when its caller
        waits on another topic (a gateway on ``inference.replies``), a copy there at once: the
        caller never waits for the transaction (its first record would wait for the partition to
        join the transaction, ~1 round trip to the coordinator), and the record stays exactly
        once for read_committed readers. A copy written before a crash and written again by the
        next owner reaches the gateway twice; it keeps the first."""
        record = self.records[lane]
        caller = request.get("reply_topic") or record
        with_turn = self.config.emit_turns and turn
        if self.txn is not None:
            if caller != record:
                self._copy_to_caller(caller, reply)
            # One after the other, nothing awaited between them or after: the answer and its
            # ChatTurn are in one transaction, and the caller marks the request answered before
            # any commit can read the offsets (never records committed without their offset).
            ok = await self._send("InferenceResponse", reply, topic=record)
            if with_turn:
                ok = await self._send("ChatTurn", turn_event(request, reply)) and ok
        else:
            header = request_id_headers(reply["request_id"])
            sends = [self._send("InferenceResponse", reply, topic=caller, headers=header)]
            if caller != record:
                sends.append(self._send("InferenceResponse", reply, topic=record))
            if with_turn:
                sends.append(self._send("ChatTurn", turn_event(request, reply)))
            ok = all(await asyncio.gather(*sends))
        error = reply.get("error")
        self.metrics.observe(
            total_ms=reply["total_ms"],
            error_type=error["type"] if error else None,
            prompt_tokens=reply.get("prompt_tokens") or 0,
            completion_tokens=reply.get("completion_tokens") or 0,
            queue_wait_ms=reply.get("queue_wait_ms") if not error else None,
            ttft_ms=reply.get("time_to_first_token_ms"),
        )
        if ok:
            self.answered += 1
        return ok

    def _copy_to_caller(self, topic: str, reply: dict[str, Any]) -> None:
        """The answer for the caller waiting on ``topic``, outside the transaction, now."""
        rid = reply.get("request_id")

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:  # the record in the transaction still holds the answer
                log.error("answer to %s not delivered to its caller on %s: %s", rid, topic, err)

        try:
            self.plain.send(
                "InferenceResponse",
                reply,
                topic=topic,
                key=reply.get("session_id") or rid,
                headers=request_id_headers(str(rid)),
                prepare=False,
                on_delivery=delivered,
            )
        except Exception:  # the caller times out; the answer is still recorded
            log.exception("answer to %s not sent to its caller on %s", rid, topic)

    async def _send(
        self,
        schema: str,
        event: dict[str, Any],
        topic: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> bool:
        """Produce one record of an answer: True once it is safe to count the request answered
        (acknowledged by the broker; with transactions, added to the open transaction, which
        commits it atomically with the request's offset)."""
        key = event.get("session_id") or event.get("request_id")
        if self.txn is not None:
            await self.txn.send(schema, event, topic, key)
            return True
        assert self._loop is not None
        loop = self._loop
        fut: asyncio.Future[bool] = loop.create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                log.error("%s for %s not delivered: %s", schema, event.get("request_id"), err)
            loop.call_soon_threadsafe(_settle, fut, err is None)

        self.producer.send(
            schema,
            event,
            topic=topic,
            key=key,
            headers=headers,
            prepare=False,
            on_delivery=delivered,
        )
        return await fut

    async def _dead_letter(self, msg: Message, reason: str) -> bool:
        """The record to ``<topic>.dlq`` with the reason; True once it is safe to count it
        handled (acknowledged, or added to the open transaction)."""
        self.metrics.dead_letters.inc()
        letters: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        DeadLetterQueue(lambda *letter: letters.append(letter)).send(
            msg.topic(),
            msg.key(),
            msg.value(),
            reason,
            partition=msg.partition(),
            offset=msg.offset(),
            schema="InferenceRequest",
        )
        assert self._loop is not None
        loop = self._loop
        delivered: list[asyncio.Future[bool]] = []
        for topic, key, value, headers in letters:
            if self.txn is not None:
                await self.txn.send_raw(topic, value, key, headers)
                continue
            fut: asyncio.Future[bool] = loop.create_future()

            def report(
                err: KafkaError | None, _msg: Message, fut: asyncio.Future[bool] = fut
            ) -> None:
                loop.call_soon_threadsafe(_settle, fut, err is None)

            self.producer.produce_raw(topic, value, key, headers, on_delivery=report)
            delivered.append(fut)
        return all(await asyncio.gather(*delivered))

    def status(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "engine": self.engine.info(),
            "model_loaded": getattr(self.engine, "loaded", True),
            "inflight": len(self._tasks),
            "background_inflight": len(self._background),
            "preemptions": self.lanes.preemptions,
            "max_inflight": self.max_inflight,
            "answered": self.answered,
            "redeliveries_skipped": self.skipped,
            "assigned": sorted(f"{t}[{p}]" for t, p in self.assigned),
            "time": time.time(),
        }


def _settle(fut: asyncio.Future[bool], ok: bool) -> None:
    if not fut.done():
        fut.set_result(ok)
