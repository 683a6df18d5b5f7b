"""The only broker of a single-node cluster stops for 15 s while A/B traffic flows and the
streams worker folds it: the worker is still running afterwards, the totals are exact, /health
says Kafka is unreachable, the seed's DATABASE_ERROR opens once and resolves, and the outage
costs the worker's log a few lines, not thousands."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from continuum.admin import TopicAdmin
from continuum.localkafka import LocalKafka, free_port
from continuum.topics import all_specs, topic_spec
from producers.simulator import SimulatorConfig
from schemas.serde import AvroDeserializer
from tests.integration.conftest import wait_for
from tests.integration.kafka_read import read_topic
from tests.integration.streams_worker import StreamsWorker
from tests.integration.traffic import Feed, wait_exact, wait_part_way

pytestmark = pytest.mark.integration
OUTAGE_S = 15


def database_alerts(bootstrap: str, prefix: str) -> list[tuple[str, str]]:
    """(status, transition) of each distinct DATABASE_ERROR event on the alerts topic."""
    topic = topic_spec("alerts").full_name(prefix)
    records = [AvroDeserializer().decode(v).record for v, _ in read_topic(bootstrap, topic)]
    distinct = {a["event_id"]: a for a in records}
    return [
        (a["status"], a["details"].get("transition", ""))
        for a in distinct.values()
        if a["alert_type"] == "DATABASE_ERROR"
    ]


def test_a_broker_outage_is_ridden_through(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    bootstrap = kafka.start(timeout=180)
    prefix = "outage-"
    TopicAdmin(bootstrap, prefix).create(all_specs())
    worker = StreamsWorker(bootstrap, prefix, tmp_path / "home")
    try:
        wait_for(worker.ready, 90, what=lambda: "streams worker:\n" + worker.tail())
        wait_for(lambda: worker.get("/health/")[1]["partitions"], 60)
        with Feed(bootstrap, prefix, SimulatorConfig(turns=30_000, rate=600, seed=12)) as feed:
            wait_part_way(worker, 3000, 60)
            before = len(worker.lines)
            kafka.stop()  # SIGTERM: the broker shuts down; the producers keep buffering
            stopped = time.monotonic()
            unreachable = None
            while time.monotonic() - stopped < OUTAGE_S:
                status, health = worker.get("/health/")
                if health and any("Kafka unreachable since" in r for r in health["reasons"]):
                    unreachable = (status, health["status"])
                time.sleep(0.5)
            assert unreachable == (503, "UNHEALTHY"), worker.get("/health/")
            worker.check_alive("streams worker during the outage")
            during = len(worker.lines) - before
            kafka.start(timeout=180)
            expected = feed.finish()
        wait_exact(worker, expected)
        worker.check_alive("streams worker after the outage")
        wait_for(lambda: "Kafka unreachable" not in str(worker.get("/health/")[1]), 30)
        wait_for(
            lambda: (
                database_alerts(bootstrap, prefix) == [("OPEN", "opened"), ("RESOLVED", "resolved")]
            ),
            60,
            what=lambda: str(database_alerts(bootstrap, prefix)),
        )
        outage_lines = worker.lines[before:]
        print(f"{during} log lines during the {OUTAGE_S} s outage, {len(outage_lines)} until exact")
        assert during < 50, "".join(worker.lines[before : before + 80])
        assert len(outage_lines) < 100, "".join(outage_lines[:100])
    finally:
        worker.stop()
        kafka.stop()


def test_inference_calls_during_an_outage_are_answered_or_fail_clearly(tmp_path: Path) -> None:
    """Chats sent to the gateway while the only broker is down for 15 s: the gateway and the
    inference worker keep running, and every call ends, answered once Kafka is back or with
    the gateway's timeout error; none hangs."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.integration.inference_procs import GatewayProc, InferenceWorkerProc

    kafka = LocalKafka(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    bootstrap = kafka.start(timeout=180)
    prefix = "outage-inf-"
    TopicAdmin(bootstrap, prefix).create(all_specs())
    worker = InferenceWorkerProc(bootstrap, prefix)
    gateway = GatewayProc(bootstrap, prefix, "--request-timeout-s", "60")
    pool = ThreadPoolExecutor(4)
    try:
        for proc in (worker, gateway):
            wait_for(proc.up, 120, 0.3, what=lambda p=proc: f"{p.what} up:\n{p.tail()}")
        body = {"messages": [{"role": "user", "content": "Hola"}], "max_tokens": 8}
        assert gateway.chat(body)[0] == 200
        marks = (len(worker.lines), len(gateway.lines))
        kafka.stop()
        calls = [
            pool.submit(gateway.chat, body, {"X-Request-Id": f"out-{i}"}, 120) for i in range(4)
        ]
        time.sleep(OUTAGE_S)
        for proc in (worker, gateway):
            proc.check_alive(f"{proc.what} during the outage")
        lines = (len(worker.lines) - marks[0], len(gateway.lines) - marks[1])
        kafka.start(timeout=180)
        results = [c.result(timeout=150) for c in calls]  # none hangs
        statuses = [s for s, _ in results]
        assert set(statuses) <= {200, 504}, results
        for status, answer in results:
            if status == 504:
                assert answer["error"]["type"], answer  # OpenAI-shaped, says what happened
        print(f"calls during the outage: {statuses}; log lines (worker, gateway): {lines}")
        assert max(lines) < 50, worker.tail(60) + gateway.tail(60)
        assert gateway.chat(body)[0] == 200  # and the path works again
    finally:
        pool.shutdown(wait=False)
        for proc in (gateway, worker):
            proc.stop()
        kafka.stop()
