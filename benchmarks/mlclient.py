"""What MLClient adds to a model call: ``MLClient.predict`` (circuit breaker, parsing, result,
Prediction event queued for Kafka) against a bare ``httpx`` POST to the same model server with the
same requests, in one run; then the same client with Kafka unreachable and a tiny producer queue
(the logging path stuck), to show that the caller does not wait for Kafka.

- added p50 / p99 = MLClient latency - bare httpx latency                    (target p50 <= 1 ms)
- the same without logging (``producer=None``): the client's own cost, apart from Kafka's
- Kafka stuck: caller p50 / p99 against the healthy run, events dropped and counted

Rounds alternate bare / MLClient so machine noise hits both alike. The model server is
``continuum model-server`` (the real dispatch model) in its own process.

    python benchmarks/mlclient.py --calls 2000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from continuum.admin import TopicAdmin  # noqa: E402
from continuum.localkafka import free_port  # noqa: E402
from continuum.topics import all_specs  # noqa: E402
from inference.bench import percentile  # noqa: E402
from inference.dispatch.rules import rules_answer  # noqa: E402
from inference.dispatch.world import dispatches  # noqa: E402
from producers import EventProducer  # noqa: E402
from producers.mlclient import MLClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def start_server(model_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "continuum.cli", "model-server", "--port", str(port)]
        + ["--model-dir", str(model_dir)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api/v2/dispatch"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1):
                return proc, base
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("model server did not come up in 180 s")


def timed(call: Any, requests: list[dict[str, Any]]) -> list[float]:
    out = []
    for req in requests:
        t = time.perf_counter()
        call(req)
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 99), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls per path")
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    ap.add_argument(
        "--model-dir",
        default=str(
            Path(os.environ.get("CONTINUUM_HOME", ROOT / ".continuum")) / "models/dispatch"
        ),
        help="where the model is kept (trained there at first run)",
    )
    args = ap.parse_args()
    requests = dispatches(11, args.calls)
    per_round = max(1, args.calls // args.rounds)
    proc, base = start_server(Path(args.model_dir))
    try:
        with benchmark_broker() as bootstrap:
            prefix = f"bench-ml-{int(time.time())}-"
            TopicAdmin(bootstrap, prefix).create(all_specs())
            producer = EventProducer(bootstrap, topic_prefix=prefix)
            bare = httpx.Client(base_url=base, timeout=5.0)
            client = MLClient(base, fallback=rules_answer, producer=producer, timeout_s=5.0)
            quiet = MLClient(base, fallback=rules_answer, timeout_s=5.0)  # logs nothing
            for req in requests[:50]:  # warm the connections and the model
                bare.post("/predict", json={"features": req}).json()
                client.predict(req)
                quiet.predict(req)
            times: dict[str, list[float]] = {"bare": [], "mlclient": [], "mlclient_no_log": []}
            for r in range(args.rounds):
                chunk = requests[r * per_round : (r + 1) * per_round]
                times["bare"] += timed(
                    lambda q: bare.post("/predict", json={"features": q}).json(), chunk
                )
                times["mlclient_no_log"] += timed(quiet.predict, chunk)
                times["mlclient"] += timed(client.predict, chunk)
            fallbacks = client.status()
            client.close()
            quiet.close()
            healthy = {k: summary(v) for k, v in times.items()}

            # Kafka unreachable and the producer's own queue tiny: the sender thread blocks,
            # the client's bounded queue fills, events are dropped and counted.
            with tempfile.TemporaryDirectory():
                stuck_producer = EventProducer(
                    f"127.0.0.1:{free_port()}",
                    config={"queue.buffering.max.messages": 50, "message.timeout.ms": 300_000},
                    max_block_s=300,
                    publish_schemas=False,
                )
                stuck = MLClient(
                    base,
                    fallback=rules_answer,
                    producer=stuck_producer,
                    timeout_s=5.0,
                    queue_size=200,
                )
                stuck_ms = timed(stuck.predict, requests[: args.calls // 2])
                dropped = stuck.events.dropped if stuck.events else 0
                stuck._stop.set()
                stuck.http.close()  # not close(): its flush would wait on the dead broker
    finally:
        proc.terminate()
        proc.wait(10)
    report = {
        "calls_per_path": len(times["bare"]),
        "bare_httpx": healthy["bare"],
        "mlclient": healthy["mlclient"],
        "added_p50_ms": round(healthy["mlclient"]["p50_ms"] - healthy["bare"]["p50_ms"], 3),
        "added_p99_ms": round(healthy["mlclient"]["p99_ms"] - healthy["bare"]["p99_ms"], 3),
        "mlclient_no_log": healthy["mlclient_no_log"],
        "added_p50_ms_no_log": round(
            healthy["mlclient_no_log"]["p50_ms"] - healthy["bare"]["p50_ms"], 3
        ),
        "events_sent": fallbacks["events_sent"],
        "events_dropped": fallbacks["events_dropped"],
        "kafka_stuck": {
            **summary(stuck_ms),
            "calls": len(stuck_ms),
            "events_dropped": dropped,
            "p50_vs_healthy": round(statistics.median(stuck_ms) / healthy["mlclient"]["p50_ms"], 3),
        },
        "target": "added p50 <= 1 ms; with Kafka stuck the caller's latency unchanged",
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
