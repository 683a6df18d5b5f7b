"""The only broker of a single-node cluster stops for 15 s while A/B traffic flows and the
streams worker folds it: the worker is still running afterwards, the totals are exact, and the
outage costs its log a few lines, not thousands."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from continuum.admin import TopicAdmin
from continuum.localkafka import LocalKafka, free_port
from continuum.topics import all_specs, topic_spec
from producers.producer import EventProducer
from producers.simulator import SimulatorConfig, run
from tests.integration.conftest import wait_for
from tests.integration.streams_worker import StreamsWorker
from tests.integration.test_streams import ab_totals

pytestmark = pytest.mark.integration


def records_of(bootstrap: str, prefix: str) -> list[dict]:
    """Every Alert on the run's alerts topic."""
    from schemas.serde import AvroDeserializer
    from tests.integration.kafka_read import read_topic

    topic = topic_spec("alerts").full_name(prefix)
    return [AvroDeserializer().decode(v).record for v, _ in read_topic(bootstrap, topic)]


OUTAGE_S = 15


def test_a_broker_outage_is_ridden_through(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    bootstrap = kafka.start(timeout=180)
    prefix = "outage-"
    TopicAdmin(bootstrap, prefix).create(all_specs())
    worker = StreamsWorker(bootstrap, prefix, tmp_path / "home")
    producer = EventProducer(bootstrap, topic_prefix=prefix)
    counts = {"ChatTurn": 0, "Feedback": 0, "Experiment": 0}
    try:
        wait_for(worker.ready, 90, what=lambda: "streams worker:\n" + worker.tail())
        wait_for(lambda: worker.get("/health/")[1]["partitions"], 60)

        def send(schema: str, ev: dict) -> None:
            producer.send(schema, ev, prepare=False)
            counts[schema] += 1

        cfg = SimulatorConfig(turns=30_000, rate=600, seed=12)
        feeder = threading.Thread(target=run, args=(send, cfg), kwargs={"realtime": True})
        feeder.start()
        wait_for(lambda: (ab_totals(worker) or (0, 0))[0] >= 3000, 60, what=worker.tail)
        before = len(worker.lines)
        kafka.stop()  # SIGTERM: the broker shuts down; the producer keeps buffering
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
        feeder.join()
        assert producer.flush(120) == 0
        expected = (counts["ChatTurn"], counts["Feedback"])
        assert expected[0] == 30_000
        wait_for(
            lambda: ab_totals(worker) == expected,
            240,
            what=lambda: f"totals {expected}, last {ab_totals(worker)}:\n{worker.tail()}",
        )
        worker.check_alive("streams worker after the outage")
        # The seed's DATABASE_ERROR: opened once for the outage, resolved when Kafka is back.
        wait_for(lambda: "Kafka unreachable" not in str(worker.get("/health/")[1]), 30)

        def database_alerts() -> list[tuple[str, str]]:
            distinct = {a["event_id"]: a for a in records_of(bootstrap, prefix)}
            return [
                (a["status"], a["details"].get("transition", ""))
                for a in distinct.values()
                if a["alert_type"] == "DATABASE_ERROR"
            ]

        wait_for(
            lambda: database_alerts() == [("OPEN", "opened"), ("RESOLVED", "resolved")],
            60,
            what=lambda: str(database_alerts()),
        )
        outage_lines = worker.lines[before:]
        print(f"{during} log lines during the {OUTAGE_S} s outage, {len(outage_lines)} until exact")
        assert during < 50, "".join(worker.lines[before : before + 80])
        assert len(outage_lines) < 100, "".join(outage_lines[:100])
    finally:
        producer.close(raise_on_failure=False)
        worker.stop()
        kafka.stop()
