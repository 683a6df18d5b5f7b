"""Integration fixtures: one real Apache Kafka (KRaft) broker for the session, started from the
Maven Central jars on free ports in a temporary folder; each test gets its own topic prefix.

Set CONTINUUM_TEST_BOOTSTRAP to use an already running broker instead (tests that restart the
broker are then skipped, and reported as skipped)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from continuum.admin import TopicAdmin
from continuum.localkafka import LocalKafka, free_port
from continuum.topics import all_specs

pytestmark = pytest.mark.integration


class Broker:
    def __init__(self, bootstrap: str, kafka: LocalKafka | None) -> None:
        self.bootstrap = bootstrap
        self.kafka = kafka

    def restart(self) -> None:
        if self.kafka is None:
            pytest.skip(
                "broker restart needs the broker the tests started (CONTINUUM_TEST_BOOTSTRAP is set)"
            )
        self.kafka.stop()
        self.kafka.start()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    external = os.environ.get("CONTINUUM_TEST_BOOTSTRAP")
    if external:
        yield Broker(external, None)
        return
    kafka = LocalKafka(
        tmp_path_factory.mktemp("kafka-home"), port=free_port(), controller_port=free_port()
    )
    bootstrap = kafka.start(timeout=180)
    try:
        yield Broker(bootstrap, kafka)
    finally:
        kafka.stop()


@pytest.fixture()
def prefix(broker: Broker) -> str:
    """A fresh topic namespace with every Continuum topic created in it."""
    p = f"it-{uuid.uuid4().hex[:8]}-"
    TopicAdmin(broker.bootstrap, p).create(all_specs())
    return p


def wait_for(
    predicate: Callable[[], bool],
    timeout: float = 60.0,
    interval: float = 0.1,
    what: str | Callable[[], str] = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    described = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {described}")


@pytest.fixture()
def worker_factory(broker: Broker, prefix: str, tmp_path: Path):
    """Start streams workers on the test broker (each with its own home); stopped at the end."""
    from tests.integration.streams_worker import StreamsWorker

    workers: list[StreamsWorker] = []

    def make(**kw) -> StreamsWorker:
        w = StreamsWorker(broker.bootstrap, prefix, tmp_path / f"home{len(workers)}", **kw)
        workers.append(w)
        wait_for(w.ready, 90, what=lambda: "streams worker web server:\n" + w.tail())
        return w

    yield make
    for w in workers:
        w.stop()


@pytest.fixture()
def stack(broker, prefix):
    """Start service processes (``InferenceWorkerProc``, ``GatewayProc``...) on the test broker,
    each waited up; all stopped after the test."""
    procs: list[Any] = []

    def start(kind, *extra):
        proc = kind(broker.bootstrap, prefix, *extra)
        procs.append(proc)
        wait_for(proc.up, 120, 0.3, what=lambda: f"{proc.what} up:\n{proc.tail()}")
        return proc

    yield start
    for p in procs:
        p.stop()
