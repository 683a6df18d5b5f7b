"""Broker failures on a local three-node KRaft cluster (replication 3, min.insync.replicas 2).

1. Streams worker: live A/B traffic at --rate turns/s; a broker is SIGKILLed (each node in turn,
   --kills times) and restarted once the worker caught up. Resume time = from the kill until the
   worker has processed every turn sent up to one second after the kill (leader moves, client
   metadata refresh and the catch-up together). p50 and max over the kills.
2. The cost of replication: the SDK producer (acks=all) sending --events ChatTurns to a topic
   replicated 3 times vs once, on the same cluster, in one run: events/s and the ratio.

    python benchmarks/failover.py [--kills 5] [--rate 300] [--events 50000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.streams_throughput import processed, start_worker  # noqa: E402
from continuum.admin import TopicAdmin  # noqa: E402
from continuum.localkafka import LocalCluster, free_port  # noqa: E402
from continuum.topics import all_specs, topic_spec  # noqa: E402
from producers.producer import EventProducer  # noqa: E402
from producers.simulator import SimulatorConfig, TrafficSimulator, run  # noqa: E402


def wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def resume_times(cluster: LocalCluster, bootstrap: str, kills: int, rate: float) -> list[float]:
    prefix = "fb-"
    TopicAdmin(bootstrap, prefix).create(all_specs())
    port = free_port()
    sent = {"ChatTurn": 0}
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as home:
        worker = start_worker(bootstrap, prefix, home, port, hop_s=5, window_s=30)
        producer = EventProducer(bootstrap, topic_prefix=prefix)

        def send(schema: str, ev: dict) -> None:
            producer.send(schema, ev, prepare=False)
            if schema == "ChatTurn":
                sent["ChatTurn"] += 1

        cfg = SimulatorConfig(turns=0, rate=rate, seed=3, feedback_probability=0)
        feeder = threading.Thread(
            target=run,
            args=(send, cfg),
            kwargs={"realtime": True, "live_time": True, "should_stop": stop.is_set},
            daemon=True,
        )
        try:
            wait(lambda: processed(port) >= 0, 120, "the streams worker")
            feeder.start()
            wait(lambda: processed(port) >= 2 * rate, 120, "traffic to be folded")
            out = []
            for i in range(kills):
                node = cluster.nodes()[i % cluster.size]
                node.stop(kill=True)
                killed = time.monotonic()
                time.sleep(1.0)
                target = sent["ChatTurn"]
                wait(lambda t=target: processed(port) >= t, 300, "the worker to catch up")
                out.append(time.monotonic() - killed)
                print(
                    f"  kill {i + 1} (node {node.node_id}): resumed in {out[-1]:.1f} s", flush=True
                )
                node.start(wait=False)
                cluster.wait_ready(180)
                wait(lambda: not cluster.status().get("under_replicated", ["?"]), 180, "in-sync")
            return out
        finally:
            stop.set()
            feeder.join(10)
            producer.close(raise_on_failure=False)
            worker.terminate()
            worker.wait(60)


def produce_rate(bootstrap: str, prefix: str, rf: int, n: int) -> float:
    admin = TopicAdmin(bootstrap, prefix, replication_factor=rf, min_insync_replicas=min(rf, 2))
    admin.create([topic_spec("chat.turns")])
    events = [
        e for s, e in TrafficSimulator(SimulatorConfig(turns=n, seed=4)).events() if s == "ChatTurn"
    ]
    with EventProducer(bootstrap, topic_prefix=prefix) as p:
        t0 = time.perf_counter()
        for ev in events:
            p.send("ChatTurn", ev, prepare=False)
        p.flush(120)
        return len(events) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--events", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="continuum-failover-") as home:
        cluster = LocalCluster(Path(home), 3, port=free_port(), controller_port=free_port())
        bootstrap = cluster.start(timeout=240)
        try:
            print(f"three-node cluster at {bootstrap}", flush=True)
            times = resume_times(cluster, bootstrap, args.kills, args.rate)
            rf1 = produce_rate(bootstrap, "rf1-", 1, args.events)
            rf3 = produce_rate(bootstrap, "rf3-", 3, args.events)
        finally:
            cluster.stop()
    print(
        f"\nstreams worker, broker SIGKILLed at {args.rate:.0f} turns/s: resumed in p50 "
        f"{statistics.median(times):.1f} s, max {max(times):.1f} s over {len(times)} kills"
    )
    print(
        f"SDK producer, acks=all: replication 1 {rf1:,.0f} events/s, replication 3 "
        f"{rf3:,.0f} events/s (ratio {rf3 / rf1:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
