"""Exactly-once answers: a worker's responses, their ``ChatTurn`` measurements, dead letters and
the offsets of the requests they answer go to Kafka in one transaction.

One transactional producer per worker instance (``transactional.id`` from the consumer group and
the worker id, so a restarted worker fences its previous incarnation). A transaction is open
whenever the worker runs; requests finish out of order and add their records to it as they
finish. Every ``interval_ms`` (when something was added) the transaction is closed: the requests'
offsets (the lowest unanswered one, the answered ones above it in the commit metadata, as
without transactions) are added with ``send_offsets_to_transaction`` under the consumer's group
metadata (a zombie whose partitions moved on is refused), the transaction is committed, and the
next one begins. Senders wait while a commit is under way.

A crash before the commit leaves the transaction open until the broker aborts it (or the next
incarnation fences it): ``read_committed`` readers (stage 1, the archive, replay) never see its
records, and the requests are answered again by the next owner, once. The gateway reads
``read_uncommitted``: it forwards the first answer at once, whichever transaction it is in.

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


class Transactions:
    """The worker's transactional path. ``producer`` is an ``EventProducer`` built with a
    ``transactional.id``; ``offsets()`` gives the offsets to commit (topic, partition, offset,
    metadata) and ``committed(...)`` is told which were; ``group_metadata()`` is the consumer's
    ``consumer_group_metadata()``."""

    def __init__(
        self,
        make_producer: Callable[[], Any],
        *,
        offsets: Callable[[], list[tuple[str, int, int, str]]],
        committed: Callable[[list[tuple[str, int, int, str]]], None],
        group_metadata: Callable[[], Any],
        interval_ms: float = 50.0,
        timeout_s: float = 60.0,
        stuck_after_s: float = CALL_TIMEOUT_S + 10,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """``make_producer()`` builds the transactional ``EventProducer`` (again after a fatal
        error). ``before_commit``: a test hook called when the transaction holds records and
        neither its offsets nor its commit were sent yet (the worst moment to die)."""
        self.make_producer = make_producer
        self.producer = make_producer()
        self.client = self.producer._producer  # the confluent-kafka Producer
        self.offsets, self.committed = offsets, committed
        self.group_metadata = group_metadata
        self.interval_s = interval_ms / 1000
        self.timeout_s = timeout_s
        self.stuck_after_s = stuck_after_s
        self.before_commit = before_commit
        self.pending = Pending()
        self.stats = TxnStats()
        self._open = asyncio.Event()
        self._lock = asyncio.Lock()
        self._runner = _Runner()
        self._last: list[tuple[str, int, int, str]] = []
        self._renewals: list[float] = []  # when the producer was made again (fatal errors)

    async def _call(
        self, fn: Callable[[], Any], what: str = "", deadline_s: float | None = None
    ) -> Any:
        """Run a blocking producer call on this producer's thread; a call that waits on Kafka
        says so every 10 s (what it waits for), a few lines per outage. Past ``deadline_s`` the
        call is given up (its thread left blocked): librdkafka's send_offsets_to_transaction
        can block forever once the group coordinator went away (librdkafka#5456, #5511)."""
        fut = self._runner.submit(fn)
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
        """Fence any earlier incarnation of this worker and open the first transaction."""
        await self._init()
        self._open.set()

    async def _init(self) -> None:
        client = self.client
        await self._call(
            lambda: with_retry(
                lambda: client.init_transactions(self.timeout_s),
                "inference worker: starting its transactions",
            )
        )
        await self._call(client.begin_transaction)

    async def send(
        self, schema: str, event: dict[str, Any], topic: str | None, key: str | None
    ) -> None:
        await self._open.wait()
        self.producer.send(schema, event, topic=topic, key=key, prepare=False)
        self.pending.records.append((schema, event, topic, key))
        self.stats.records += 1

    async def send_raw(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        await self._open.wait()
        self.producer.produce_raw(topic, value, key, headers)
        self.pending.raw.append((topic, value, key, headers))
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
        """Close the open transaction (records, and the offsets answered so far) and begin the
        next one. Nothing to do when nothing changed."""
        async with self._lock:
            offsets = self.offsets()
            if not self.pending and offsets == self._last:
                return
            self._open.clear()
            started = time.perf_counter()
            try:
                await self._commit(offsets)
            finally:
                self.stats.commit_ms += (time.perf_counter() - started) * 1000
                self._open.set()

    async def _commit(self, offsets: list[tuple[str, int, int, str]]) -> None:
        while True:
            try:
                if self.before_commit is not None and self.pending:
                    self.before_commit()
                if offsets:
                    tps = [TopicPartition(t, p, o, metadata=m) for t, p, o, m in offsets]
                    group = self.group_metadata()
                    await self._call(
                        functools.partial(
                            self.client.send_offsets_to_transaction, tps, group, CALL_TIMEOUT_S
                        ),
                        "add the answered offsets to the transaction",
                        deadline_s=self.stuck_after_s,
                    )
                await self._call(
                    functools.partial(self.client.commit_transaction, CALL_TIMEOUT_S),
                    "commit the transaction",
                    deadline_s=self.stuck_after_s,
                )
            except _Stuck as exc:
                await self._renew(str(exc))
                offsets = self.offsets()
                continue
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.fatal():
                    await self._renew(err.str())
                    offsets = self.offsets()
                    continue
                if err.txn_requires_abort():
                    log.warning("transaction aborted (%s); producing it again", err.str())
                    self.stats.aborts += 1
                    await self._call(lambda: self.client.abort_transaction(self.timeout_s))
                    await self._call(self.client.begin_transaction)
                    self._redo()
                    offsets = self.offsets()
                    continue
                if err.retriable():
                    log.warning("transaction commit retried: %s", err.str())
                    await asyncio.sleep(0.5)
                    continue
                raise
            break
        self.stats.commits += 1
        self.pending = Pending()
        self._last = offsets
        if offsets:
            self.committed(offsets)
        await self._call(self.client.begin_transaction)

    async def _renew(self, why: str) -> None:
        """A new producer with the same transactional id (the old one cannot be used after a
        fatal error), its first transaction holding the records of the one that failed."""
        now = time.monotonic()
        self._renewals = [t for t in self._renewals if now - t < 60] + [now]
        if len(self._renewals) > 3:
            raise RuntimeError(
                f"transactional producer unusable {len(self._renewals)} times in a minute "
                f"({why}): is another worker running with the same --worker-id?"
            )
        log.warning("transactional producer unusable (%s); starting a new one", why)
        self.stats.renewals += 1
        self._runner.stop()  # a call may still block it: left behind (a daemon thread)
        self._runner = _Runner()
        self.producer = self.make_producer()
        self.client = self.producer._producer
        await self._init()
        self._redo()

    def _redo(self) -> None:
        """Produce the aborted transaction's records again, in the new transaction."""
        for schema, event, topic, key in self.pending.records:
            self.producer.send(schema, event, topic=topic, key=key, prepare=False)
        for topic, value, key, headers in self.pending.raw:
            self.producer.produce_raw(topic, value, key, headers)

    async def close(self) -> None:
        """The last commit (drained requests), then nothing is left open."""
        try:
            await self.commit()
        finally:
            self._runner.stop()


FAULT_ENV = "CONTINUUM_FAULT_KILL_BEFORE_TXN_COMMIT"


def fault_hook(producer: Callable[[], Any]) -> Callable[[], None] | None:
    """Fault injection for the tests that prove the transactional path: with
    ``CONTINUUM_FAULT_KILL_BEFORE_TXN_COMMIT=N`` the worker SIGKILLs itself at its N-th
    transaction commit, once the answers are on the broker and before their offsets and the
    commit (the worst moment). Unset in production."""
    raw = os.environ.get(FAULT_ENV)
    if not raw:
        return None
    left = [int(raw)]

    def hook() -> None:
        left[0] -= 1
        if left[0] <= 0:
            log.warning("%s: killing this worker before its transaction commits", FAULT_ENV)
            producer().flush(10)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
