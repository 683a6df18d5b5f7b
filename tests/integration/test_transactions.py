"""The worker's transactional path on the real broker with the real model: a worker killed after
producing its answers and before its transaction commits (the worst moment) leaves exactly one
response and one ChatTurn per request for ``read_committed`` readers, and every caller gets one
answer."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from continuum import kafka as clients
from continuum.topics import topic_spec
from inference.transactions import FAULT_ENV
from schemas.ids import stable_id
from schemas.serde import AvroDeserializer
from tests.integration.conftest import wait_for
from tests.integration.inference_procs import GatewayProc, InferenceWorkerProc, metric

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.integration


def records(bootstrap: str, topic: str, isolation: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` as a reader with ``isolation.level`` sees it."""
    d = AvroDeserializer()
    c = clients.consumer(
        bootstrap,
        f"read-{time.time_ns()}",
        {"isolation.level": isolation, "enable.partition.eof": True},
    )
    try:
        parts = clients.partitions_of(c, topic)
        c.assign([clients.TopicPartition(topic, p, 0) for p in parts])
        out, ended, deadline = [], set(), time.monotonic() + 30
        while len(ended) < len(parts) and time.monotonic() < deadline:
            for msg in c.consume(500, 0.5):
                if msg.error():
                    if msg.error().code() == clients.KafkaError._PARTITION_EOF:
                        ended.add(msg.partition())
                    continue
                out.append(d.decode(msg.value()).record)
        return out
    finally:
        c.close()


def test_a_worker_killed_before_its_transaction_commits_leaves_each_answer_once(
    broker, prefix
) -> None:
    env = {FAULT_ENV: "1"}  # dies at its first commit: answers produced, offsets not committed
    doomed = InferenceWorkerProc(broker.bootstrap, prefix, "--worker-id", "doomed", env=env)
    gateway = GatewayProc(broker.bootstrap, prefix, "--request-timeout-s", "120")
    survivor = None
    try:
        wait_for(doomed.up, 120, 0.3, what=doomed.tail)
        wait_for(gateway.up, 60, 0.3, what=gateway.tail)
        ids = [f"tx-{i}" for i in range(6)]
        pool = ThreadPoolExecutor(len(ids))
        calls = [
            pool.submit(
                gateway.chat,
                {
                    "model": "any",
                    "messages": [{"role": "user", "content": f"Hola, carro {rid}"}],
                    "max_tokens": 8,
                    "temperature": 0,
                },
                {"X-Request-Id": rid, "X-Session-Id": f"s-{rid}"},
                180,
            )
            for rid in ids
        ]
        wait_for(lambda: doomed.proc.poll() is not None, 120, what=doomed.tail)
        survivor = InferenceWorkerProc(broker.bootstrap, prefix, "--worker-id", "survivor")
        results = [c.result() for c in calls]
        pool.shutdown()
        assert [s for s, _ in results] == [200] * len(ids), results
        responses = topic_spec("inference.responses").full_name(prefix)
        turns = topic_spec("chat.turns").full_name(prefix)

        def committed() -> Counter[str]:
            return Counter(
                r["request_id"] for r in records(broker.bootstrap, responses, "read_committed")
            )

        # A caller may have its answer from the doomed worker (its copy on inference.replies,
        # written outside the transaction: first answer wins); the survivor answers it again,
        # committed.
        wait_for(lambda: set(committed()) == set(ids), 90, what=lambda: str(committed()))
        everything = Counter(
            r["request_id"] for r in records(broker.bootstrap, responses, "read_uncommitted")
        )
        # The kill came after the doomed worker produced answers (its aborted transaction
        # holds them), yet committed readers see each request answered exactly once.
        assert sum(everything.values()) > len(ids), everything
        assert committed() == Counter(ids)
        # The gateways' copies are outside transactions: one per answer made, doomed or not.
        replies = topic_spec("inference.replies").full_name(prefix)
        copies = Counter(
            r["request_id"] for r in records(broker.bootstrap, replies, "read_committed")
        )
        assert set(copies) == set(ids) and sum(copies.values()) >= len(ids), copies
        committed_turns = records(broker.bootstrap, turns, "read_committed")
        assert Counter(t["event_id"] for t in committed_turns) == Counter(
            stable_id("turn", rid) for rid in ids
        )
        _, metrics = survivor.get("/metrics")
        assert metric(metrics, "okla_llm_requests_total") >= 1
        print(
            f"answers produced {sum(everything.values())}, committed {len(ids)}; "
            f"the doomed worker answered {sum(everything.values()) - len(ids)} before dying"
        )
    finally:
        for proc in (doomed, gateway, survivor):
            if proc is not None:
                proc.stop()
