"""Exactly-once answers: a worker's responses, their ``ChatTurn`` measurements, dead letters and
the offsets of the requests they answer go to Kafka in one transaction.

Two transactional producers ("slots") per worker instance, their ``transactional.id`` from the
consumer group and the worker id (the second with ``.1``), so a restarted worker fences its
previous incarnation. A transaction is open whenever the worker runs; requests finish out of
order and add all their records to it in one step, with their offset marked answered in the same
step. Every ``interval_ms`` (when something was added) the open transaction is closed: new
records go to the other slot's transaction from that moment, and the requests' offsets answered
by then (the lowest unanswered one, the answered ones above it in the commit metadata, as
without transactions) are added with ``send_offsets_to_transaction`` under the consumer's group
metadata (a zombie whose partitions moved on is refused), and the transaction is committed. So
an answer never waits for a commit (5-30 ms on a loaded host); commits take turns.

A crash before the commit leaves the transaction open until the broker aborts it (or the next
incarnation fences it): ``read_committed`` readers (stage 1, the archive, replay) never see its
records, and the requests are answered again by the next owner, once. Gateways do not wait for
any of this: the worker copies each answer to the gateways' ``inference.replies`` at once,
outside the transaction, and a gateway forwards the first copy per request id.

Records of the open transaction are kept until it commits: when the broker says the transaction
must be aborted (an abortable error), it is aborted and the same records go into the next one,
without generating anything again. A fatal error (the producer's epoch was bumped: the broker
timed the transaction out while it was unreachable, or another process took this transactional
id) makes a new producer with the same id, which aborts what was open, and the same records go
into its first transaction. Taken over again and again (another live worker with the same worker
id), the worker stops, saying so.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from continuum.retry import with_retry

log = logging.getLogger(__name__)

# librdkafka's timeout for send_offsets_to_transaction and commit_transaction: a retriable
# timeout during an outage is retried; a call that outlives it by 10 s is given up.
CALL_TIMEOUT_S = 10.0


class _Stuck(Exception):
    """A producer call blocked past its deadline."""


class _Runner:
    """One daemon thread running one producer's blocking calls in order. A call that never
    returns leaves only this thread behind (it does not keep the process alive)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="txn", daemon=True).start()

    def submit(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((fn, fut, loop))
        return fut

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, fut, loop = item
            try:
                result, error = fn(), None
            except BaseException as exc:  # handed to the awaiting coroutine
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, fut, result, error)
            except RuntimeError:  # the loop closed while the call blocked: nobody waits
                return


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


@dataclass
class Pending:
    """What the open transaction holds: records to produce again if it must be redone."""

    records: list[tuple[str, dict[str, Any], str | None, str | None]] = field(default_factory=list)
    raw: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = field(
        default_factory=list
    )

    def __bool__(self) -> bool:
        return bool(self.records or self.raw)


@dataclass
class TxnStats:
    commits: int = 0
    aborts: int = 0
    records: int = 0
    renewals: int = 0
    commit_ms: float = 0.0  # total time spent committing


class _Slot:
    """One transactional producer, the thread that runs its blocking calls, and the records of
    the transaction it has open."""

    def __init__(self, index: int, producer: Any) -> None:
        self.index = index
        self.producer = producer
        self.client = producer._producer  # the confluent-kafka Producer
        self.runner = _Runner()
        self.pending = Pending()
        self.renewals: list[float] = []  # when its producer was made again (fatal errors)


class Transactions:
    """The worker's transactional path. ``make_producer(slot)`` builds the transactional
    ``EventProducer`` of a slot (again after a fatal error); ``offsets()`` gives the offsets to
    commit (topic, partition, offset, metadata) and ``committed(...)`` is told which were;
    ``group_metadata()`` is the consumer's ``consumer_group_metadata()``.

    Two slots by default, each a producer with its own transactional id: while one slot's
    transaction commits (three round trips to the coordinators, 5-30 ms), answers go into the
    other's, so no answer waits for a commit. Commits take turns: a slot commits the records
    sent to it since the last switch and the offsets answered by then, which are all in it or in
    transactions already committed. With one slot, senders wait while it commits."""

    def __init__(
        self,
        make_producer: Callable[[int], Any],
        *,
        offsets: Callable[[], list[tuple[str, int, int, str]]],
        committed: Callable[[list[tuple[str, int, int, str]]], None],
        group_metadata: Callable[[], Any],
        interval_ms: float = 50.0,
        timeout_s: float = 60.0,
        stuck_after_s: float = CALL_TIMEOUT_S + 10,
        before_commit: Callable[[Any], None] | None = None,
        slots: int = 2,
    ) -> None:
        """``before_commit(producer)``: a test hook called when a transaction holds records and
        neither its offsets nor its commit were sent yet (the worst moment to die)."""
        self.make_producer = make_producer
        self.slots = [_Slot(i, make_producer(i)) for i in range(max(1, slots))]
        self.current = self.slots[0]  # the slot whose transaction takes new records
        self.offsets, self.committed = offsets, committed
        self.group_metadata = group_metadata
        self.interval_s = interval_ms / 1000
        self.timeout_s = timeout_s
        self.stuck_after_s = stuck_after_s
        self.before_commit = before_commit
        self.stats = TxnStats()
        self._open = asyncio.Event()
        self._lock = asyncio.Lock()
        self._last: list[tuple[str, int, int, str]] = []

    @property
    def producer(self) -> Any:
        """The producer of the transaction that takes new records."""
        return self.current.producer

    @property
    def producers(self) -> list[Any]:
        return [slot.producer for slot in self.slots]

    @property
    def pending(self) -> Pending:
        """Records sent and not committed yet, all slots together."""
        out = Pending()
        for slot in self.slots:
            out.records += slot.pending.records
            out.raw += slot.pending.raw
        return out

    async def _call(
        self,
        slot: _Slot,
        fn: Callable[[], Any],
        what: str = "",
        deadline_s: float | None = None,
    ) -> Any:
        """Run a blocking producer call on its slot's thread; a call that waits on Kafka says
        so every 10 s (what it waits for), a few lines per outage. Past ``deadline_s`` the call
        is given up (its thread left blocked): librdkafka's send_offsets_to_transaction can
        block forever once the group coordinator went away (librdkafka#5456, #5511)."""
        fut = slot.runner.submit(fn)
        started = time.monotonic()
        while True:
            step = 10.0 if deadline_s is None else max(0.01, min(10.0, deadline_s))
            try:
                return await asyncio.wait_for(asyncio.shield(fut), step)
            except TimeoutError:
                waited = time.monotonic() - started
                if deadline_s is not None and waited > deadline_s:
                    raise _Stuck(
                        f"{what or 'a transactional call'} blocked {waited:.0f}s"
                    ) from None
                log.warning(
                    "transactions: waiting %.0fs for Kafka to %s",
                    waited,
                    what or getattr(fn, "__name__", "answer"),
                )

    async def start(self) -> None:
        """Fence any earlier incarnation of this worker and open the first transactions."""
        for slot in self.slots:
            await self._init(slot)
        self._open.set()

    async def _init(self, slot: _Slot) -> None:
        client = slot.client
        await self._call(
            slot,
            lambda: with_retry(
                lambda: client.init_transactions(self.timeout_s),
                "inference worker: starting its transactions",
            ),
        )
        await self._call(slot, client.begin_transaction)

    async def send(
        self, schema: str, event: dict[str, Any], topic: str | None, key: str | None
    ) -> None:
        """Add a record to the open transaction. Returns without yielding to the event loop
        when a transaction is open (always, with two slots, once started): records sent one
        after another with nothing awaited in between land in the same transaction, and the
        caller's bookkeeping right after them happens before any commit reads it."""
        await self._open.wait()
        slot = self.current
        slot.producer.send(schema, event, topic=topic, key=key, prepare=False)
        slot.pending.records.append((schema, event, topic, key))
        self.stats.records += 1

    async def send_raw(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        await self._open.wait()
        slot = self.current
        slot.producer.produce_raw(topic, value, key, headers)
        slot.pending.raw.append((topic, value, key, headers))
        self.stats.records += 1

    async def run(self, stopping: asyncio.Event) -> None:
        """Commit every interval until ``stopping``; the caller commits once more at the end."""
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), self.interval_s)
            except TimeoutError:
                pass
            await self.commit()

    async def commit(self) -> None:
        """Close the open transaction (its records, and the offsets answered so far), new
        records going to the next slot's meanwhile. Nothing to do when nothing changed."""
        async with self._lock:
            slot = self.current
            offsets = self.offsets()
            if not slot.pending and (not offsets or offsets == self._last):
                return
            following = self.slots[(slot.index + 1) % len(self.slots)]
            if following is slot:
                self._open.clear()
            else:
                self.current = following  # open: it began when its last commit ended
            started = time.perf_counter()
            try:
                await self._commit(slot, offsets)
            finally:
                self.stats.commit_ms += (time.perf_counter() - started) * 1000
                self._open.set()

    async def flush(self) -> None:
        """Commit until every slot's records and every answered offset are committed."""
        for _ in range(len(self.slots) + 1):
            await self.commit()

    def _still_ours(
        self, offsets: list[tuple[str, int, int, str]]
    ) -> list[tuple[str, int, int, str]]:
        """The offsets of a transaction being redone, less partitions taken away meanwhile
        (a rebalance): never the ones answered since, which are in the next slot's."""
        ours = {(t, p) for t, p, _, _ in self.offsets()}
        return [o for o in offsets if (o[0], o[1]) in ours]

    async def _commit(self, slot: _Slot, offsets: list[tuple[str, int, int, str]]) -> None:
        while True:
            try:
                if self.before_commit is not None and slot.pending:
                    self.before_commit(slot.producer)
                if offsets:
                    tps = [TopicPartition(t, p, o, metadata=m) for t, p, o, m in offsets]
                    group = self.group_metadata()
                    await self._call(
                        slot,
                        functools.partial(
                            slot.client.send_offsets_to_transaction, tps, group, CALL_TIMEOUT_S
                        ),
                        "add the answered offsets to the transaction",
                        deadline_s=self.stuck_after_s,
                    )
                await self._call(
                    slot,
                    functools.partial(slot.client.commit_transaction, CALL_TIMEOUT_S),
                    "commit the transaction",
                    deadline_s=self.stuck_after_s,
                )
            except _Stuck as exc:
                await self._renew(slot, str(exc))
                offsets = self._still_ours(offsets)
                continue
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.fatal():
                    await self._renew(slot, err.str())
                    offsets = self._still_ours(offsets)
                    continue
                if err.txn_requires_abort():
                    log.warning("transaction aborted (%s); producing it again", err.str())
                    self.stats.aborts += 1
                    abort = functools.partial(slot.client.abort_transaction, self.timeout_s)
                    await self._call(slot, abort)
                    await self._call(slot, slot.client.begin_transaction)
                    self._redo(slot)
                    offsets = self._still_ours(offsets)
                    continue
                if err.retriable():
                    log.warning("transaction commit retried: %s", err.str())
                    await asyncio.sleep(0.5)
                    continue
                raise
            break
        self.stats.commits += 1
        slot.pending = Pending()
        self._last = offsets
        if offsets:
            self.committed(offsets)
        await self._call(slot, slot.client.begin_transaction)

    async def _renew(self, slot: _Slot, why: str) -> None:
        """A new producer with the slot's transactional id (the old one cannot be used after a
        fatal error), its first transaction holding the records of the one that failed."""
        now = time.monotonic()
        slot.renewals = [t for t in slot.renewals if now - t < 60] + [now]
        if len(slot.renewals) > 3:
            raise RuntimeError(
                f"transactional producer unusable {len(slot.renewals)} times in a minute "
                f"({why}): is another worker running with the same --worker-id?"
            )
        log.warning("transactional producer unusable (%s); starting a new one", why)
        self.stats.renewals += 1
        slot.runner.stop()  # a call may still block it: left behind (a daemon thread)
        slot.runner = _Runner()
        slot.producer = self.make_producer(slot.index)
        slot.client = slot.producer._producer
        await self._init(slot)
        self._redo(slot)

    @staticmethod
    def _redo(slot: _Slot) -> None:
        """Produce the aborted transaction's records again, in the new transaction."""
        for schema, event, topic, key in slot.pending.records:
            slot.producer.send(schema, event, topic=topic, key=key, prepare=False)
        for topic, value, key, headers in slot.pending.raw:
            slot.producer.produce_raw(topic, value, key, headers)

    async def close(self) -> None:
        """The last commits (drained requests), then nothing is left open."""
        try:
            await self.flush()
        finally:
            for slot in self.slots:
                slot.runner.stop()


FAULT_ENV = "CONTINUUM_FAULT_KILL_BEFORE_TXN_COMMIT"


def fault_hook() -> Callable[[Any], None] | None:
    """Fault injection for the tests that prove the transactional path: with
    ``CONTINUUM_FAULT_KILL_BEFORE_TXN_COMMIT=N`` the worker SIGKILLs itself at its N-th
    transaction commit, once the answers are on the broker and before their offsets and the
    commit (the worst moment). Unset in production."""
    raw = os.environ.get(FAULT_ENV)
    if not raw:
        return None
    left = [int(raw)]

    def hook(producer: Any) -> None:
        left[0] -= 1
        if left[0] <= 0:
            log.warning("%s: killing this worker before its transaction commits", FAULT_ENV)
            producer.flush(10)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
