"""Broker for benchmarks: the one at CONTINUUM_BOOTSTRAP_SERVERS if it answers, else a throwaway
local Kafka started for the run (and stopped after)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from continuum.localkafka import LocalKafka, free_port, port_open


@contextlib.contextmanager
def benchmark_broker() -> Iterator[str]:
    bootstrap = os.environ.get("CONTINUUM_BOOTSTRAP_SERVERS")
    if bootstrap:
        host, _, port = bootstrap.partition(":")
        if port_open(host, int(port or 9092)):
            yield bootstrap
            return
    with tempfile.TemporaryDirectory(prefix="continuum-bench-") as home:
        kafka = LocalKafka(Path(home), port=free_port(), controller_port=free_port())
        try:
            yield kafka.start(timeout=180)
        finally:
            kafka.stop()
