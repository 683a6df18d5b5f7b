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
without generating anything again. A fatal error (this producer was fenced) stops the worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from continuum.retry import with_retry

log = logging.getLogger(__name__)


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
    commit_ms: float = 0.0  # total time spent committing


class Transactions:
    """The worker's transactional path. ``producer`` is an ``EventProducer`` built with a
    ``transactional.id``; ``offsets()`` gives the offsets to commit (topic, partition, offset,
    metadata) and ``committed(...)`` is told which were; ``group_metadata()`` is the consumer's
    ``consumer_group_metadata()``."""

    def __init__(
        self,
        producer: Any,
        *,
        offsets: Callable[[], list[tuple[str, int, int, str]]],
        committed: Callable[[list[tuple[str, int, int, str]]], None],
        group_metadata: Callable[[], Any],
        interval_ms: float = 50.0,
        timeout_s: float = 60.0,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """``before_commit``: a test hook called when the transaction holds records and neither
        its offsets nor its commit were sent yet (the worst moment to die)."""
        self.producer = producer
        self.client = producer._producer  # the confluent-kafka Producer
        self.offsets, self.committed = offsets, committed
        self.group_metadata = group_metadata
        self.interval_s = interval_ms / 1000
        self.timeout_s = timeout_s
        self.before_commit = before_commit
        self.pending = Pending()
        self.stats = TxnStats()
        self._open = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="txn")
        self._last: list[tuple[str, int, int, str]] = []

    async def _call(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def start(self) -> None:
        """Fence any earlier incarnation of this worker and open the first transaction."""
        await self._call(
            lambda: with_retry(
                lambda: self.client.init_transactions(self.timeout_s),
                "inference worker: starting its transactions",
            )
        )
        await self._call(self.client.begin_transaction)
        self._open.set()

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
                            self.client.send_offsets_to_transaction, tps, group, self.timeout_s
                        )
                    )
                await self._call(lambda: self.client.commit_transaction(self.timeout_s))
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.fatal():
                    raise  # fenced by a newer incarnation: this worker must stop
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
            self._pool.shutdown(wait=False)
