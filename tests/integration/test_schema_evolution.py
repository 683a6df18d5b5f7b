"""Rolling upgrade: a producer one release ahead (ChatTurn gained a field) writes while the
streams worker still runs the current schemas. Registry-free, the worker learns the writer
schema from the schemas topic; with a Schema Registry (behind basic auth), from the registry.
Either way every record is counted exactly once and nothing is dead-lettered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from continuum.demo.chat import SimulatorConfig, run
from continuum.demo.services import dead_letters
from continuum.settings import Settings
from producers.producer import EventProducer
from schemas import AvroSerializer
from schemas.serde import make_registry
from tests.integration.conftest import Broker
from tests.integration.fakes import FakeRegistry
from tests.integration.traffic import wait_exact
from tests.newer_schemas import newer_catalog

pytestmark = pytest.mark.integration


def send_as_newer_release(producer: EventProducer, turns: int) -> tuple[int, int]:
    counts = {"ChatTurn": 0, "Feedback": 0}

    def send(schema: str, ev: dict[str, Any]) -> None:
        if schema == "ChatTurn":
            ev = {**ev, "sentiment": 0.25}
        producer.send(schema, ev, prepare=False)
        if schema in counts:
            counts[schema] += 1

    run(send, SimulatorConfig(turns=turns, seed=21), live_time=True)
    assert producer.flush(60) == 0
    return counts["ChatTurn"], counts["Feedback"]


def test_registry_free_an_older_worker_reads_a_newer_producer(
    broker: Broker, prefix: str, worker_factory, tmp_path: Path
) -> None:
    worker = worker_factory()
    with EventProducer(
        broker.bootstrap, topic_prefix=prefix, serializer=AvroSerializer(newer_catalog(tmp_path))
    ) as producer:
        expected = send_as_newer_release(producer, 2000)
        published = producer.serializer.on_new_writer.published
    assert len(published) >= 1  # the newer ChatTurn at least
    wait_exact(worker, expected, 120)
    assert dead_letters(broker.bootstrap, prefix) == 0


def test_with_an_authenticated_registry_an_older_worker_reads_a_newer_producer(
    broker: Broker, prefix: str, worker_factory, tmp_path: Path
) -> None:
    registry = FakeRegistry("sr-key", "sr-secret-789")
    secret = tmp_path / "sr.password"
    secret.write_text("sr-secret-789\n")
    env = {
        "CONTINUUM_SCHEMA_REGISTRY_URL": registry.url,
        "CONTINUUM_SCHEMA_REGISTRY_USERNAME": "sr-key",
        "CONTINUUM_SCHEMA_REGISTRY_PASSWORD_FILE": str(secret),
    }
    try:
        worker = worker_factory(env=env)
        settings = Settings.from_env(env)
        serializer = AvroSerializer(newer_catalog(tmp_path), registry=make_registry(settings))
        with EventProducer(broker.bootstrap, topic_prefix=prefix, serializer=serializer) as p:
            expected = send_as_newer_release(p, 2000)
        wait_exact(worker, expected, 120)
        assert dead_letters(broker.bootstrap, prefix) == 0
        assert registry.schemas, "nothing was registered"
        assert registry.refused == 0, "a client reached the registry without credentials"
        assert "sr-secret-789" not in "".join(worker.lines)
    finally:
        registry.close()
