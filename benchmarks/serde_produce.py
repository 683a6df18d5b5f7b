"""Validate + encode + produce throughput of ChatTurn through the SDK, against

* the ceiling: bare ``fastavro.schemaless_writer`` + ``Producer.produce`` on the same records, and
* the peer: confluent-kafka's own ``AvroSerializer`` (schema registry client, in-process mock).

All three use one producer configuration (the SDK's: idempotent, acks=all, lz4, linger 5 ms) and
include the final flush, on the real local broker. Runs are interleaved and repeated; the median
is reported. Targets: SDK >= 0.8 x ceiling, >= 1.5 x peer.

    python benchmarks/serde_produce.py [--events 50000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroSerializer as ConfluentAvroSerializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402
from fastavro import schemaless_writer  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from continuum.admin import TopicAdmin  # noqa: E402
from continuum.demo.chat import SimulatorConfig, TrafficSimulator  # noqa: E402
from continuum.topics import TopicSpec  # noqa: E402
from producers.producer import PRODUCER_DEFAULTS, EventProducer  # noqa: E402
from schemas import default_catalog  # noqa: E402


def chat_turns(n: int, seed: int = 7) -> list[dict]:
    """``n`` simulated ChatTurns (no feedback), the records every produce benchmark sends."""
    cfg = SimulatorConfig(turns=n, feedback_probability=0, seed=seed)
    return [e for _, e in TrafficSimulator(cfg).events()]


def producer(bootstrap: str) -> Producer:
    return Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap})


def produce_all(p: Producer, topic: str, items: list[tuple[bytes, str]]) -> None:
    for value, key in items:
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)


def ceiling(bootstrap: str, topic: str, records: list[dict]) -> float:
    schema = default_catalog().current("ChatTurn").wire
    p = producer(bootstrap)
    t = time.perf_counter()
    for rec in records:
        buf = io.BytesIO()
        schemaless_writer(buf, schema, rec)
        while True:
            try:
                p.produce(topic, buf.getvalue(), rec["session_id"])
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)
    return len(records) / (time.perf_counter() - t)


def sdk(bootstrap: Any, topic: str, records: list[dict], prefix: str = "") -> float:
    """The SDK's send loop (validate, encode, produce; the final flush included): events/s.
    ``topic``: a declared topic's logical name (prefixed with ``prefix``) or a literal one."""
    p = EventProducer(bootstrap, topic_prefix=prefix)
    t = time.perf_counter()
    for rec in records:
        p.send("ChatTurn", rec, topic=topic, prepare=False)
    p.close(120)
    return len(records) / (time.perf_counter() - t)


def peer(bootstrap: str, topic: str, records: list[dict]) -> float:
    registry = SchemaRegistryClient.new_client({"url": "mock://bench"})
    ser = ConfluentAvroSerializer(registry, default_catalog().current("ChatTurn").schema_str)
    ctx = SerializationContext(topic, MessageField.VALUE)
    p = producer(bootstrap)
    t = time.perf_counter()
    for rec in records:
        value = ser(rec, ctx)
        while True:
            try:
                p.produce(topic, value, rec["session_id"])
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)
    return len(records) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    records = chat_turns(args.events)
    runs: dict[str, list[float]] = {"ceiling": [], "sdk": [], "peer": []}
    fns: dict[str, Callable[[str, str, list[dict]], float]] = {
        "ceiling": ceiling,
        "sdk": sdk,
        "peer": peer,
    }
    with benchmark_broker() as bootstrap:
        run_id = uuid.uuid4().hex[:6]
        topics = {name: f"bench-{run_id}-{name}" for name in fns}
        TopicAdmin(bootstrap).create(
            [TopicSpec(t, None, None, partitions=6) for t in topics.values()]
        )
        sdk(bootstrap, topics["sdk"], records[:2000])  # warm-up: connections, idempotent PID
        order = list(fns)
        for r in range(args.repeats):
            order = order[1:] + order[:1]  # rotate so no variant always runs first
            for name in order:
                fn = fns[name]
                runs[name].append(fn(bootstrap, topics[name], records))
                print(f"  repeat {r + 1} {name:8} {runs[name][-1]:>10,.0f} ev/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"\nChatTurn validate+encode+produce, {args.events:,} events x {args.repeats} (median):")
    print(f"  ceiling (bare schemaless_writer + produce): {med['ceiling']:>10,.0f} ev/s")
    print(f"  Continuum SDK (EventProducer.send)        : {med['sdk']:>10,.0f} ev/s")
    print(f"  peer (confluent AvroSerializer + produce) : {med['peer']:>10,.0f} ev/s")
    print(f"  SDK / ceiling = {med['sdk'] / med['ceiling']:.2f}  (target >= 0.80)")
    print(f"  SDK / peer    = {med['sdk'] / med['peer']:.2f}  (target >= 1.50)")


if __name__ == "__main__":
    main()
