"""Throughput of the full streams analytics on one worker, and produce -> signal latency.

1. Ceiling: a bare confluent-kafka consume loop that only decodes the same ChatTurns.
2. Analytics: `continuum streams worker` folds the pre-loaded topic (decode + validation, DLQ
   step, change detectors, stage-1 partials written to the changelog and the partials topic
   before each commit, Prometheus histograms, stage-2 rollup and drift evaluation); events/s is
   measured from its /metrics counter (first event -> last event).
3. Latency: live traffic at --rate turns/s with event time = wall time and 1 s hops; for every
   window the worker closes live, latency = DriftSignal arrival - window end (the closing
   event's produce time). p50/p99 reported. Windows that ended before the first signal arrived
   are left out: they are evaluated in one catch-up once the baseline froze (start-up).

With ``--against REV`` the worker of another commit (a git worktree of REV, same interpreter and
packages) runs the same two measurements in the same run, on its own pre-loaded copy of the
topic: the before/after of a change, with the machine's noise shared.

    python benchmarks/streams_throughput.py [--events 100000] [--rate 1000] [--seconds 30]
                                            [--against REV]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from continuum.admin import TopicAdmin  # noqa: E402
from continuum.demo.chat import SimulatorConfig, TrafficSimulator, run  # noqa: E402
from continuum.localkafka import free_port  # noqa: E402
from producers.consumer import EventConsumer  # noqa: E402
from producers.producer import EventProducer  # noqa: E402
from schemas import AvroDeserializer  # noqa: E402


def preload(bootstrap: Any, prefix: str, n: int) -> None:
    with EventProducer(bootstrap, topic_prefix=prefix) as p:
        for _, ev in TrafficSimulator(
            SimulatorConfig(turns=n, rate=500, feedback_probability=0)
        ).events():
            p.send("ChatTurn", ev, prepare=False)


def ceiling(bootstrap: str, topic: str, n: int) -> float:
    d = AvroDeserializer()
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"ceil-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    got, t0 = 0, None
    while got < n:
        for m in c.consume(1000, 1.0):
            if m.error():
                continue
            if t0 is None:
                t0 = time.perf_counter()
            d.decode(m.value(), "ChatTurn")
            got += 1
    dt = time.perf_counter() - (t0 or time.perf_counter())
    c.close()
    return n / dt


def start_worker(
    bootstrap: str,
    prefix: str,
    home: str,
    port: int,
    hop_s: int,
    window_s: int,
    extra_env: dict[str, str] | None = None,
    tree: Path | None = None,
) -> subprocess.Popen:
    """A streams worker; ``tree``: run another checkout's code (its modules shadow this one's:
    ``python -m`` puts the working directory first on the path)."""
    env = {
        **os.environ,
        "CONTINUUM_BOOTSTRAP_SERVERS": bootstrap,
        "CONTINUUM_TOPIC_PREFIX": prefix,
        "CONTINUUM_HOME": home,
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "continuum.cli",
            "streams",
            "worker",
            "--web-port",
            str(port),
            "--hop-s",
            str(hop_s),
            "--window-s",
            str(window_s),
            "--freeze-after",
            "500",
        ],
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def processed(port: int) -> int:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return -1
    m = re.search(r'continuum_events_processed_total\{type="ChatTurn"\} ([0-9.e+]+)', body)
    return int(float(m.group(1))) if m else 0


def analytics(
    bootstrap: str,
    prefix: str,
    n: int,
    extra_env: dict[str, str] | None = None,
    tree: Path | None = None,
) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        proc = start_worker(
            bootstrap, prefix, home, port, hop_s=300, window_s=3600, extra_env=extra_env, tree=tree
        )
        try:
            t_first = t_last = None
            last = 0
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                c = processed(port)
                now = time.perf_counter()
                if c > 0 and t_first is None:
                    t_first, first_count = now, c
                if c > last:
                    last, t_last = c, now
                if c >= n:
                    break
                time.sleep(0.05)
            if t_first is None or t_last is None or last < n:
                raise RuntimeError(f"worker processed {last} of {n}")
            return (last - first_count) / (t_last - t_first)
        finally:
            proc.terminate()
            proc.wait(30)


def latency(
    bootstrap: str, prefix: str, rate: float, seconds: float, tree: Path | None = None
) -> list[float]:
    port = free_port()
    lat: list[float] = []
    with tempfile.TemporaryDirectory() as home:
        proc = start_worker(bootstrap, prefix, home, port, hop_s=1, window_s=10, tree=tree)
        try:
            while processed(port) < 0:
                time.sleep(0.2)
            consumer = EventConsumer(
                bootstrap,
                f"lat-{uuid.uuid4().hex[:6]}",
                ["drift-signals"],
                topic_prefix=prefix,
                config={"auto.offset.reset": "latest"},
            )
            consumer.wait_assigned(30)
            stop = threading.Event()
            producer = EventProducer(bootstrap, topic_prefix=prefix, config={"linger.ms": 1})
            feeder = threading.Thread(
                target=run,
                args=(
                    lambda s, e: producer.send(s, e, prepare=False),
                    SimulatorConfig(turns=int(rate * seconds), rate=rate, feedback_probability=0),
                ),
                kwargs={"realtime": True, "live_time": True, "should_stop": stop.is_set},
            )
            feeder.start()
            seen: set[tuple[str, int]] = set()
            first_ms: float | None = None
            end = time.monotonic() + seconds + 5
            while time.monotonic() < end:
                producer.poll(0)
                for ev in consumer.poll(0.1):
                    s = ev.event
                    key = (s["model_version"], s["window_end"] or 0)
                    if s["detector"] == "window" and key not in seen:
                        seen.add(key)
                        now_ms = time.time() * 1000
                        first_ms = first_ms or now_ms
                        # Windows that ended before the first signal came were caught up once the
                        # baseline froze (start-up), not closed live: not a latency.
                        if s["window_end"] >= first_ms:
                            lat.append(now_ms - s["window_end"])
            stop.set()
            feeder.join()
            producer.close(raise_on_failure=False)
            consumer.close()
        finally:
            proc.terminate()
            proc.wait(30)
    return lat


@contextlib.contextmanager
def worktree(rev: str | None) -> Iterator[Path | None]:
    """A detached git worktree of ``rev`` (removed afterwards), or None for this checkout."""
    if rev is None:
        yield None
        return
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(root), "worktree", "remove", "--force", str(path)],
                check=False,
                capture_output=True,
            )


def report(name: str, full: float, ceil: float, lat: list[float], rate: float) -> None:
    print(f"  {name}: analytics {full:,.0f} turns/s, ratio to the ceiling {full / ceil:.2f}")
    if lat:
        q = statistics.quantiles(lat, n=100)
        print(
            f"  {name}: produce -> DriftSignal at {rate:,.0f} turns/s: p50 "
            f"{statistics.median(lat):,.0f} ms, p99 {q[98]:,.0f} ms over {len(lat)} windows"
        )
    else:
        print(f"  {name}: no windows closed during the latency run")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--against", metavar="REV", help="also run the worker of this commit")
    args = ap.parse_args()
    if args.against:
        compare(args)
        return
    with benchmark_broker() as bootstrap:
        prefix = f"bench-{uuid.uuid4().hex[:6]}-"
        TopicAdmin(bootstrap, prefix).create()
        preload(bootstrap, prefix, args.events)
        ceil = ceiling(bootstrap, f"{prefix}chat.turns", args.events)
        print(f"  ceiling (consume + decode only)  : {ceil:>10,.0f} turns/s", flush=True)
        full = analytics(bootstrap, prefix, args.events)
        print(f"  full analytics, one worker       : {full:>10,.0f} turns/s", flush=True)
        prefix2 = f"bench-{uuid.uuid4().hex[:6]}-"
        TopicAdmin(bootstrap, prefix2).create()
        lat = latency(bootstrap, prefix2, args.rate, args.seconds)
    print(f"\nstreams analytics, {args.events:,} pre-loaded ChatTurns:")
    print(
        f"  ceiling: {ceil:,.0f} turns/s   analytics: {full:,.0f} turns/s   ratio {full / ceil:.2f}"
        f"   (target >= 10,000 turns/s)"
    )
    if lat:
        q = statistics.quantiles(lat, n=100)
        print(
            f"  produce -> DriftSignal at {args.rate:,.0f} turns/s: p50 {statistics.median(lat):,.0f} ms, "
            f"p99 {q[98]:,.0f} ms over {len(lat)} windows (target p99 < 1000 ms)"
        )
    else:
        print("  no windows closed during the latency run")


def compare(args: argparse.Namespace) -> None:
    """This checkout and ``args.against``, each on its own pre-loaded copy, in one run
    (alternating: the other commit first, then this one)."""
    results: dict[str, tuple[float, list[float]]] = {}
    with worktree(args.against) as tree, benchmark_broker() as bootstrap:
        prefixes = {}
        for name in ("before", "after"):
            prefixes[name] = f"bench-{uuid.uuid4().hex[:6]}-"
            TopicAdmin(bootstrap, prefixes[name]).create()
            preload(bootstrap, prefixes[name], args.events)
        ceil = ceiling(bootstrap, f"{prefixes['after']}chat.turns", args.events)
        full = {}
        for name, where in (("before", tree), ("after", None)):
            full[name] = analytics(bootstrap, prefixes[name], args.events, tree=where)
            print(f"  {name}: {full[name]:,.0f} turns/s", flush=True)
        for name, where in (("before", tree), ("after", None)):
            prefix = f"bench-{uuid.uuid4().hex[:6]}-"
            TopicAdmin(bootstrap, prefix).create()
            results[name] = (full[name], latency(bootstrap, prefix, args.rate, args.seconds, where))
    print(f"\nstreams analytics, {args.events:,} pre-loaded ChatTurns, ceiling {ceil:,.0f} turns/s")
    print(f"  before = {args.against}, after = this checkout")
    for name, (f, lat) in results.items():
        report(name, f, ceil, lat, args.rate)
    print(f"  after / before throughput: {results['after'][0] / results['before'][0]:.2f}")


if __name__ == "__main__":
    main()
