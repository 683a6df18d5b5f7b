"""The worker's transaction cycle (inference.transactions) against a fake transactional producer:
records and offsets commit together, an abortable failure is redone without regenerating, a
fenced producer stops the worker; with two slots an answer never waits for a commit and each
commit holds exactly the offsets answered into it (with one slot, senders wait)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from inference.transactions import Transactions


class TxnClient:
    """The transactional calls of confluent_kafka.Producer, recorded; fails on demand."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.fail_commit: list[KafkaError] = []
        self.offsets: list[list[tuple[str, int, int]]] = []

    def init_transactions(self, timeout: float) -> None:
        self.log.append("init")

    def begin_transaction(self) -> None:
        self.log.append("begin")

    def send_offsets_to_transaction(self, tps: Any, group: Any, timeout: float) -> None:
        assert group == "group-metadata"
        self.offsets.append([(tp.topic, tp.partition, tp.offset) for tp in tps])
        self.log.append("offsets")

    def commit_transaction(self, timeout: float) -> None:
        if self.fail_commit:
            raise KafkaException(self.fail_commit.pop(0))
        self.log.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.log.append("abort")

    def purge(self) -> None:
        self.log.append("purge")


class Producer:
    def __init__(self) -> None:
        self._producer = TxnClient()
        self.sent: list[tuple[str, str]] = []

    def send(self, schema: str, event: dict[str, Any], **kw: Any) -> None:
        self.sent.append((schema, event["id"]))
        self._producer.log.append(f"send {event['id']}")

    def produce_raw(self, topic: str, value: Any, key: Any, headers: Any) -> None:
        self.sent.append(("raw", topic))
        self._producer.log.append(f"raw {topic}")


def error(code: int, *, fatal: bool = False, abort: bool = False, retriable: bool = False):
    return KafkaError(code, "test", fatal=fatal, retriable=retriable, txn_requires_abort=abort)


def make(
    offsets: list[list[tuple[str, int, int, str]]], slots: int = 2
) -> tuple[Transactions, Producer, list]:
    """Transactions over fake producers; returns slot 0's producer (slot 1's: txn.slots[1])."""
    committed: list = []
    book = list(offsets)
    txn = Transactions(
        lambda slot: Producer(),
        offsets=lambda: book[0] if book else [],
        committed=committed.append,
        group_metadata=lambda: "group-metadata",
        interval_ms=5,
        slots=slots,
    )
    return txn, txn.slots[0].producer, committed


def test_records_and_offsets_commit_together_then_the_next_transaction_begins() -> None:
    txn, producer, committed = make([[("req", 0, 5, "6,7")]])

    async def run() -> None:
        await txn.start()
        await txn.send("InferenceResponse", {"id": "a"}, "replies", "k")
        await txn.send_raw("req.dlq", b"x", None, [])
        await txn.commit()
        await txn.commit()  # nothing new: nothing sent

    asyncio.run(run())
    log = producer._producer.log
    assert log == ["init", "begin", "send a", "raw req.dlq", "offsets", "commit", "begin"]
    assert txn.slots[1].client.log == ["init", "begin"]  # open, nothing to commit
    assert producer._producer.offsets == [[("req", 0, 5)]]
    assert committed == [[("req", 0, 5, "6,7")]] and txn.stats.commits == 1
    assert not txn.pending


def test_an_abortable_failure_is_redone_in_the_next_transaction_without_regenerating() -> None:
    txn, producer, committed = make([[("req", 1, 3, "")]])
    producer._producer.fail_commit = [error(KafkaError._STATE, abort=True)]

    async def run() -> None:
        await txn.start()
        await txn.send("InferenceResponse", {"id": "a"}, None, None)
        await txn.commit()

    asyncio.run(run())
    log = producer._producer.log
    assert log == [
        "init",
        "begin",
        "send a",
        "offsets",
        "abort",
        "begin",
        "send a",  # the same record, produced again
        "offsets",
        "commit",
        "begin",
    ]
    assert txn.stats.aborts == 1 and committed == [[("req", 1, 3, "")]]


def test_a_retriable_error_is_retried_and_a_fatal_one_renews_the_producer() -> None:
    made: list[tuple[int, Producer]] = []

    def make_producer(slot: int) -> Producer:
        made.append((slot, Producer()))
        return made[-1][1]

    txn = Transactions(
        make_producer,
        offsets=lambda: [],
        committed=lambda offsets: None,
        group_metadata=lambda: "group-metadata",
    )
    first, second = made[0][1], made[1][1]
    first._producer.fail_commit = [error(KafkaError._TIMED_OUT, retriable=True)]

    async def run() -> None:
        await txn.start()
        await txn.send("ChatTurn", {"id": "t"}, None, None)
        await txn.commit()  # slot 0, retried
        second._producer.fail_commit = [error(KafkaError._FENCED, fatal=True)]
        await txn.send("ChatTurn", {"id": "u"}, None, None)  # slot 1's transaction
        await txn.commit()  # a new producer for slot 1 commits "u"

    asyncio.run(run())
    assert first._producer.log == ["init", "begin", "send t", "commit", "begin"]
    assert [slot for slot, _ in made] == [0, 1, 1]  # slot 1 made again, slot 0 untouched
    assert made[2][1]._producer.log == ["init", "begin", "send u", "commit", "begin"]
    assert txn.slots[1].producer is made[2][1] and txn.stats.renewals == 1


def test_a_producer_taken_over_again_and_again_stops_the_worker() -> None:
    def fenced(slot: int) -> Producer:
        p = Producer()
        p._producer.fail_commit = [error(KafkaError._FENCED, fatal=True)] * 10
        return p

    txn = Transactions(
        fenced,
        offsets=lambda: [],
        committed=lambda offsets: None,
        group_metadata=lambda: "group-metadata",
    )

    async def run() -> None:
        await txn.start()
        await txn.send("ChatTurn", {"id": "t"}, None, None)
        await txn.commit()

    with pytest.raises(RuntimeError, match="same --worker-id"):
        asyncio.run(run())


def test_a_call_that_blocks_forever_is_given_up_for_a_new_producer() -> None:
    """librdkafka's send_offsets_to_transaction can block past its timeout once the group
    coordinator went away: the call is abandoned and a new producer redoes the transaction."""
    import threading

    made: list[Producer] = []
    never = threading.Event()

    def make_producer(slot: int) -> Producer:
        made.append(Producer())
        if len(made) == 1:
            made[0]._producer.send_offsets_to_transaction = (  # type: ignore[method-assign]
                lambda *a: never.wait()
            )
        return made[-1]

    txn = Transactions(
        make_producer,
        offsets=lambda: [("req", 0, 4, "")],
        committed=lambda offsets: None,
        group_metadata=lambda: "group-metadata",
        stuck_after_s=0.2,
        slots=1,
    )

    async def run() -> None:
        await txn.start()
        await txn.send("ChatTurn", {"id": "t"}, None, None)
        await txn.commit()

    asyncio.run(run())
    never.set()
    assert made[1]._producer.log == ["init", "begin", "send t", "offsets", "commit", "begin"]
    assert txn.stats.renewals == 1


def test_with_one_slot_senders_wait_while_a_commit_is_under_way() -> None:
    txn, producer, _ = make([], slots=1)
    order: list[str] = []

    async def run() -> None:
        await txn.start()
        slow_commit = producer._producer.commit_transaction

        def commit(timeout: float) -> None:
            order.append("committing")
            slow_commit(timeout)

        producer._producer.commit_transaction = commit  # type: ignore[method-assign]
        await txn.send("ChatTurn", {"id": "a"}, None, None)
        committing = asyncio.ensure_future(txn.commit())
        await asyncio.sleep(0)  # the commit closed the gate
        sender = asyncio.ensure_future(txn.send("ChatTurn", {"id": "b"}, None, None))
        await committing
        await sender
        order.append("sent b")

    asyncio.run(run())
    assert order == ["committing", "sent b"]
    log = producer._producer.log
    assert log.index("send b") > log.index("commit")


def test_with_two_slots_an_answer_goes_into_the_other_transaction_during_a_commit() -> None:
    """The commit of slot 0 holds the offsets answered before it began; an answer sent while it
    commits does not wait, lands in slot 1, and its offset is committed with it, next."""
    import threading

    book: list[tuple[str, int, int, str]] = [("req", 0, 1, "")]
    committed: list = []
    txn = Transactions(
        lambda slot: Producer(),
        offsets=lambda: list(book),
        committed=committed.append,
        group_metadata=lambda: "group-metadata",
    )
    zero, one = txn.slots[0].client, txn.slots[1].client
    release = threading.Event()
    slow = zero.commit_transaction

    def commit(timeout: float) -> None:
        release.wait(5)
        slow(timeout)

    zero.commit_transaction = commit  # type: ignore[method-assign]
    order: list[str] = []

    async def run() -> None:
        await txn.start()
        await txn.send("InferenceResponse", {"id": "a"}, None, None)  # answers offset 0
        committing = asyncio.ensure_future(txn.commit())
        await asyncio.sleep(0.05)  # slot 0 is committing, blocked in the broker call
        await txn.send("InferenceResponse", {"id": "b"}, None, None)  # answers offset 1
        book[0] = ("req", 0, 2, "")
        order.append("sent b")
        release.set()
        await committing
        order.append("slot 0 committed")
        await txn.commit()

    asyncio.run(run())
    assert order == ["sent b", "slot 0 committed"]  # b did not wait for the commit
    assert "send b" not in zero.log and "send b" in one.log
    assert zero.offsets == [[("req", 0, 1)]]  # the snapshot taken when slot 0 closed
    assert one.offsets == [[("req", 0, 2)]]
    assert committed == [[("req", 0, 1, "")], [("req", 0, 2, "")]]
    assert txn.stats.commits == 2 and not txn.pending


def test_a_redone_transaction_keeps_the_offsets_it_closed_with() -> None:
    """Aborted and produced again, slot 0's transaction commits the offsets answered into it,
    not the ones answered since (those are in slot 1's, not committed yet)."""
    book: list[tuple[str, int, int, str]] = [("req", 0, 1, "")]
    txn = Transactions(
        lambda slot: Producer(),
        offsets=lambda: list(book),
        committed=lambda offsets: None,
        group_metadata=lambda: "group-metadata",
    )
    zero = txn.slots[0].client
    zero.fail_commit = [error(KafkaError._STATE, abort=True)]
    original_abort = zero.abort_transaction

    def abort(timeout: float) -> None:
        book[0] = ("req", 0, 2, "")  # another request answered (into slot 1) meanwhile
        original_abort(timeout)

    zero.abort_transaction = abort  # type: ignore[method-assign]

    async def run() -> None:
        await txn.start()
        await txn.send("InferenceResponse", {"id": "a"}, None, None)
        await txn.commit()

    asyncio.run(run())
    assert zero.offsets == [[("req", 0, 1)], [("req", 0, 1)]]
    assert zero.log.count("send a") == 2 and zero.log[-2:] == ["commit", "begin"]
