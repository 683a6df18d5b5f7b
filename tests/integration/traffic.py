"""Simulated A/B traffic sent in real time on a thread, counted as it is sent, the wait for a
streams worker's A/B totals to equal what was sent (no loss, no double count), and the other
services (``continuum ARGV``) as child processes with what their archive holds."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from continuum.demo.chat import SimulatorConfig, TrafficSimulator, run
from continuum.kafka import Connection
from jobs.archive import archive_files, read_archive
from producers.producer import EventProducer
from tests.integration.child import Child
from tests.integration.conftest import Broker, wait_for
from tests.integration.streams_worker import StreamsWorker


def ab_totals(worker: StreamsWorker) -> tuple[int, int] | None:
    """(turns, feedback) of the simulator's experiment as the worker counts them."""
    status, body = worker.get("/ab/v1-vs-v2/")
    if status != 200:
        return None
    return (
        body["control"]["turns"] + body["treatment"]["turns"],
        body["control"]["feedback"] + body["treatment"]["feedback"],
    )


class Feed:
    def __init__(self, bootstrap: str | Connection, prefix: str, cfg: SimulatorConfig) -> None:
        self.producer = EventProducer(bootstrap, topic_prefix=prefix)
        self.counts = {"ChatTurn": 0, "Feedback": 0, "Experiment": 0}
        self.turns = cfg.turns
        self.thread = threading.Thread(
            target=run, args=(self._send, cfg), kwargs={"realtime": True}
        )

    def _send(self, schema: str, ev: dict[str, Any]) -> None:
        self.producer.send(schema, ev, prepare=False)
        self.counts[schema] += 1

    def __enter__(self) -> Feed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join()
        self.producer.close(raise_on_failure=False)

    def alive(self) -> bool:
        return self.thread.is_alive()

    def finish(self, flush_s: float = 120.0) -> tuple[int, int]:
        """Wait for the traffic to end and be acknowledged; (turns, feedback) sent."""
        self.thread.join()
        assert self.producer.flush(flush_s) == 0, "traffic not acknowledged"
        assert self.counts["ChatTurn"] == self.turns
        return self.counts["ChatTurn"], self.counts["Feedback"]


def wait_part_way(worker: StreamsWorker, turns: int, timeout: float = 90.0) -> None:
    wait_for(
        lambda: (ab_totals(worker) or (0, 0))[0] >= turns,
        timeout,
        what=lambda: "the worker to be part-way:\n" + worker.tail(),
    )


def wait_exact(worker: StreamsWorker, expected: tuple[int, int], timeout: float = 240.0) -> None:
    wait_for(
        lambda: ab_totals(worker) == expected,
        timeout,
        what=lambda: f"totals {expected}, last seen {ab_totals(worker)}:\n{worker.tail()}",
    )


def cli_child(bootstrap: str, prefix: str, home: Path, *argv: str, **env: str) -> Child:
    """``continuum ARGV`` as a child process on the test broker."""
    return Child(
        [sys.executable, "-m", "continuum.cli", *argv],
        {
            "CONTINUUM_BOOTSTRAP_SERVERS": bootstrap,
            "CONTINUUM_TOPIC_PREFIX": prefix,
            "CONTINUUM_HOME": str(home),
            **env,
        },
    )


def archived(home: Path, topic: str) -> list[str]:
    """Event ids in the archive under ``home`` for a topic, in file order."""
    return [r["event_id"] for r in read_archive(archive_files(home / "archive", topic))]


START = 1_767_225_600_000


def produce(broker: Broker, prefix: str, cfg: SimulatorConfig) -> tuple[int, int]:
    """Send a simulation's events; (turns, feedback) sent."""
    turns = fb = 0
    with EventProducer(broker.bootstrap, topic_prefix=prefix) as p:
        for schema, ev in TrafficSimulator(cfg).events():
            p.send(schema, ev, prepare=False)
            turns += schema == "ChatTurn"
            fb += schema == "Feedback"
    return turns, fb


def simulate_predictions(broker: Broker, prefix: str, *args: str) -> str:
    """Run `continuum simulate-predictions` against the test broker; its standard output."""
    import subprocess
    import sys

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "continuum.cli",
            "simulate-predictions",
            *args,
            "--bootstrap-servers",
            broker.bootstrap,
            "--topic-prefix",
            prefix,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
