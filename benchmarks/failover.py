"""Broker failures on a local three-node KRaft cluster (replication 3, min.insync.replicas 2).

1. Streams worker and inference path: live A/B traffic at --rate turns/s, and chats sent to the
   gateway one after another (the inference worker answers through the request and reply
   topics); a broker is SIGKILLed (each node in turn, --kills times) and restarted once both
   caught up. Streams resume time = from the kill until the worker has processed every turn sent
   up to one second after the kill (leader moves, client metadata refresh and the catch-up
   together). Inference resume time = from the kill until a chat sent after it is answered.
   p50 and max over the kills.
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

from benchmarks.serde_produce import chat_turns, sdk  # noqa: E402
from benchmarks.streams_throughput import processed, start_worker  # noqa: E402
from continuum.admin import TopicAdmin  # noqa: E402
from continuum.demo.chat import SimulatorConfig, run  # noqa: E402
from continuum.localkafka import LocalCluster, free_port  # noqa: E402
from continuum.topics import all_specs, topic_spec  # noqa: E402
from producers.producer import EventProducer  # noqa: E402
from tests.integration.inference_procs import (  # noqa: E402
    ChatProbe,
    GatewayProc,
    InferenceWorkerProc,
)


def wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def resume_times(
    cluster: LocalCluster, bootstrap: str, kills: int, rate: float
) -> tuple[list[float], list[float]]:
    prefix = "fb-"
    TopicAdmin(bootstrap, prefix).create(all_specs())
    port = free_port()
    sent = {"ChatTurn": 0}
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as home:
        worker = start_worker(bootstrap, prefix, home, port, hop_s=5, window_s=30)
        inference = InferenceWorkerProc(bootstrap, prefix)
        gateway = GatewayProc(bootstrap, prefix, "--request-timeout-s", "60")
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
            wait(lambda: inference.up() and gateway.up(), 240, "the inference worker and gateway")
            feeder.start()
            wait(lambda: processed(port) >= 2 * rate, 120, "traffic to be folded")
            streams, chats = [], []
            with ChatProbe(gateway, pause_s=0.2) as probe:
                wait(lambda: probe.answered_after(0) is not None, 120, "a first chat")
                for i in range(kills):
                    node = cluster.nodes()[i % cluster.size]
                    node.stop(kill=True)
                    killed = time.monotonic()
                    time.sleep(1.0)
                    target = sent["ChatTurn"]
                    wait(lambda t=target: processed(port) >= t, 300, "the worker to catch up")
                    streams.append(time.monotonic() - killed)
                    wait(lambda k=killed: probe.answered_after(k) is not None, 300, "a chat")
                    chats.append((probe.answered_after(killed) or 0) - killed)
                    print(
                        f"  kill {i + 1} (node {node.node_id}): streams resumed in "
                        f"{streams[-1]:.1f} s, chats answered again after {chats[-1]:.1f} s",
                        flush=True,
                    )
                    node.start(wait=False)
                    cluster.wait_ready(180)
                    wait(
                        lambda: not cluster.status().get("under_replicated", ["?"]), 180, "in-sync"
                    )
                failed = [c for c in probe.calls if c[2] != 200]
            print(f"  chats: {len(probe.calls)} sent, {len(failed)} not answered", flush=True)
            return streams, chats
        finally:
            stop.set()
            feeder.join(10)
            producer.close(raise_on_failure=False)
            for proc in (gateway, inference):
                proc.stop()
            worker.terminate()
            worker.wait(60)


def produce_rate(bootstrap: str, prefix: str, rf: int, n: int) -> float:
    admin = TopicAdmin(bootstrap, prefix, replication_factor=rf, min_insync_replicas=min(rf, 2))
    admin.create([topic_spec("chat.turns")])
    return sdk(bootstrap, "chat.turns", chat_turns(n, seed=4), prefix)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--events", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="continuum-failover-") as home:
        cluster = LocalCluster.on_free_ports(Path(home), 3)
        bootstrap = cluster.start(timeout=240)
        try:
            print(f"three-node cluster at {bootstrap}", flush=True)
            times, chats = resume_times(cluster, bootstrap, args.kills, args.rate)
            rf1 = produce_rate(bootstrap, "rf1-", 1, args.events)
            rf3 = produce_rate(bootstrap, "rf3-", 3, args.events)
        finally:
            cluster.stop()
    print(
        f"\nstreams worker, broker SIGKILLed at {args.rate:.0f} turns/s: resumed in p50 "
        f"{statistics.median(times):.1f} s, max {max(times):.1f} s over {len(times)} kills"
    )
    print(
        f"inference path (gateway -> worker -> gateway), broker SIGKILLed: a chat answered "
        f"again after p50 {statistics.median(chats):.1f} s, max {max(chats):.1f} s"
    )
    print(
        f"SDK producer, acks=all: replication 1 {rf1:,.0f} events/s, replication 3 "
        f"{rf3:,.0f} events/s (ratio {rf3 / rf1:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
