"""What Kafka adds to inference: the same prompts through gateway -> Kafka -> worker -> Kafka ->
gateway, versus the same engine called directly, in one run.

Both paths use the same engine settings, prompts and sampling (temperature 0, fixed max_tokens).
Rounds alternate direct / Kafka so machine noise hits both alike; the medians are reported.

- tokens/s ratio  = completion tokens per second via Kafka / directly     (target >= 0.9)
- added p50       = p50 call latency via Kafka - p50 directly            (target <= 10 ms)

The worker runs as its own process (`continuum infer worker`), the gateway's request/reply logic
in this process without HTTP (``Gateway.complete``). The Kafka path is measured twice in the same
run, with the worker's transactions on (answers, ChatTurns and offsets committed together) and
off (offsets committed after each answer's acknowledgement): the cost of exactly-once is the
difference, plus how long after the caller has its answer a ``read_committed`` reader (stage 1,
the archive) sees it. On a GPU, use the vLLM engine:

    python benchmarks/inference_overhead.py --engine vllm --model-path models/smollm2-hf
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import OFFSET_END, TopicPartition  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from continuum import kafka as clients  # noqa: E402
from continuum.admin import TopicAdmin  # noqa: E402
from continuum.localkafka import free_port  # noqa: E402
from continuum.topics import all_specs  # noqa: E402
from inference.bench import PROMPTS, percentile  # noqa: E402
from inference.gateway import Gateway, GatewayConfig  # noqa: E402
from inference.protocol import GenerationRequest, Sampling  # noqa: E402
from inference.service import engine_from_settings  # noqa: E402
from inference.settings import InferenceSettings  # noqa: E402
from schemas import AvroDeserializer  # noqa: E402


def prompts(n: int, round_no: int) -> list[str]:
    # Distinct prompts per call (no prompt-cache shortcut), the same list for both paths.
    return [f"{PROMPTS[i % len(PROMPTS)]} (consulta {round_no}-{i})" for i in range(n)]


async def run_calls(
    call, texts: list[str], concurrency: int
) -> tuple[dict[str, float], int, float, list[float]]:
    """Latency per prompt (ms), completion tokens, wall seconds, and per-call engine time where
    the path reports one."""
    sem = asyncio.Semaphore(concurrency)
    latencies: dict[str, float] = {}
    engine_ms: list[float] = []
    tokens = 0

    async def one(text: str) -> None:
        nonlocal tokens
        async with sem:
            t0 = time.perf_counter()
            n, inside = await call(text)
            latencies[text] = (time.perf_counter() - t0) * 1000
            tokens += n
            if inside is not None:
                engine_ms.append(latencies[text] - inside)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(t) for t in texts))
    return latencies, tokens, time.perf_counter() - t0, engine_ms


class CommittedLag(threading.Thread):
    """Tails the reply topic as a ``read_committed`` reader: when each answer became visible."""

    def __init__(self, settings: InferenceSettings, topic: str) -> None:
        super().__init__(daemon=True)
        self.topic = topic
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.consumer = clients.consumer(
            settings, f"lag-{uuid.uuid4().hex[:6]}", {"fetch.wait.max.ms": 5}, offset_reset="latest"
        )
        self.decoder = AvroDeserializer()

    def run(self) -> None:
        parts = clients.partitions_of(self.consumer, self.topic)
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_END) for p in parts])
        while not self.stop.is_set():
            for msg in self.consumer.consume(100, 0.05):
                if msg.error() or msg.value() is None:
                    continue
                rid = self.decoder.decode(msg.value()).record["request_id"]
                self.seen.setdefault(rid, time.perf_counter())
        self.consumer.close()


async def bench(
    args: argparse.Namespace, settings: InferenceSettings, modes: list[str]
) -> dict[str, Any]:
    """``modes``: the worker's transaction setting for each Kafka path measured ("on", "off");
    the worker of each is started (and stopped) here in turn, rounds alternating direct/Kafka."""
    engine = engine_from_settings(settings)
    await engine.start()
    gateway = Gateway(settings, GatewayConfig(timeout_s=300))
    await gateway.start()
    lag = CommittedLag(settings, gateway.reply_topic)
    lag.start()
    answered_at: dict[str, float] = {}
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.0)

    split: dict[str, list[float]] = {"queue_wait_ms": [], "total_ms": []}

    async def direct(text: str) -> int:
        req = GenerationRequest(uuid.uuid4().hex, ({"role": "user", "content": text},), sampling)
        return (await engine.generate(req)).completion_tokens, None

    async def via_kafka(text: str) -> int:
        body = {
            "messages": [{"role": "user", "content": text}],
            "max_tokens": args.max_tokens,
            "temperature": 0,
        }
        rid = uuid.uuid4().hex
        status, out = await gateway.complete(body, {"X-Request-Id": rid})
        answered_at[rid] = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"gateway answered {status}: {out}")
        c = out["continuum"]
        split["queue_wait_ms"].append(c["queue_wait_ms"])
        split["total_ms"].append(c["total_ms"])
        # Time the worker spent generating: from engine start to the finished answer.
        generating = c["total_ms"] - c["queue_wait_ms"]
        return out["usage"]["completion_tokens"], generating

    report: dict[str, Any] = {
        "engine": engine.info(),
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
    }
    for mode in modes:
        worker = start_worker(args, settings, transactions=mode == "on")
        try:
            answered_at.clear()
            lag.seen.clear()
            split["queue_wait_ms"].clear()
            report[f"transactions_{mode}"] = await measure(
                args, direct, via_kafka, split, answered_at, lag, mode
            )
        finally:
            worker.terminate()
            worker.wait(60)
    lag.stop.set()
    await gateway.stop()
    await engine.stop()
    return report


async def measure(
    args: argparse.Namespace,
    direct: Any,
    via_kafka: Any,
    split: dict[str, list[float]],
    answered_at: dict[str, float],
    lag: CommittedLag,
    mode: str,
) -> dict[str, Any]:
    # Warm both paths (model pages, prompt templates, Kafka connections).
    await run_calls(direct, prompts(2, -1), 1)
    await run_calls(via_kafka, prompts(2, -1), 1)
    rows: dict[str, list[dict[str, float]]] = {"direct": [], "kafka": []}
    paired: list[float] = []  # same prompt: latency via Kafka - latency direct
    transport: list[float] = []  # call latency via Kafka - the worker's generation time
    for r in range(args.rounds):
        texts = prompts(args.requests, r)
        seen: dict[str, dict[str, float]] = {}
        for name, call in (("direct", direct), ("kafka", via_kafka)):
            lat, tokens, wall, overhead = await run_calls(call, texts, args.concurrency)
            seen[name] = lat
            transport += overhead
            values = list(lat.values())
            rows[name].append(
                {
                    "tokens_per_s": tokens / wall,
                    "p50_ms": percentile(values, 50),
                    "p99_ms": percentile(values, 99),
                    "tokens": tokens,
                }
            )
            print(
                f"transactions {mode} round {r + 1} {name:>6}: {tokens / wall:7.1f} tok/s  "
                f"p50 {percentile(values, 50):7.1f} ms  p99 {percentile(values, 99):7.1f} ms",
                flush=True,
            )
        paired += [seen["kafka"][t] - seen["direct"][t] for t in texts]
    await asyncio.sleep(1.0)  # the last transaction commits
    visible = [(lag.seen[rid] - at) * 1000 for rid, at in answered_at.items() if rid in lag.seen]

    def med(name: str, key: str) -> float:
        return statistics.median(row[key] for row in rows[name])

    return {
        "direct": {k: round(med("direct", k), 2) for k in ("tokens_per_s", "p50_ms", "p99_ms")},
        "kafka": {k: round(med("kafka", k), 2) for k in ("tokens_per_s", "p50_ms", "p99_ms")},
        "tokens_per_s_ratio": round(
            med("kafka", "tokens_per_s") / med("direct", "tokens_per_s"), 3
        ),
        "added_p50_ms": round(med("kafka", "p50_ms") - med("direct", "p50_ms"), 2),
        "paired_added_ms_p50": round(percentile(paired, 50), 2),
        "request_path_ms_p50": round(percentile(split["queue_wait_ms"], 50), 2),
        "transport_overhead_ms": {
            "p50": round(percentile(transport, 50), 2),
            "p99": round(percentile(transport, 99), 2),
        },
        # After the caller had its answer, when a read_committed reader saw it (negative: the
        # committed reader saw it first, e.g. without transactions).
        "committed_visible_after_ms": {
            "p50": round(percentile(visible, 50), 2) if visible else None,
            "p99": round(percentile(visible, 99), 2) if visible else None,
            "answers": len(visible),
        },
    }


def start_worker(
    args: argparse.Namespace, settings: InferenceSettings, *, transactions: bool
) -> subprocess.Popen[bytes]:
    port = free_port()
    env = {
        **os.environ,
        "CONTINUUM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "CONTINUUM_TOPIC_PREFIX": settings.topic_prefix,
        "PYTHONUNBUFFERED": "1",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "continuum.cli",
            "infer",
            "worker",
            "--engine",
            args.engine,
            "--model-path",
            args.model_path,
            "--slots",
            str(args.slots),
            "--threads",
            str(args.threads),
            "--worker-port",
            str(port),
            "--worker-host",
            "127.0.0.1",
            "--emit-turns",
            "false",
            "--transactions",
            "true" if transactions else "false",
        ],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    deadline = time.time() + 600
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return worker
        except OSError:
            if worker.poll() is not None or time.time() > deadline:
                worker.kill()
                raise RuntimeError("inference worker did not start") from None
            time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--engine", default="llamacpp", choices=["llamacpp", "vllm"])
    ap.add_argument("--model-path", default="")
    ap.add_argument("--requests", type=int, default=16, help="calls per round and path")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--concurrency", type=int, default=1, help="calls in flight (llama.cpp: 1 slot)"
    )
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--slots", type=int, default=1, help="llama.cpp contexts")
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = all cores)")
    ap.add_argument(
        "--transactions",
        default="both",
        choices=["both", "on", "off"],
        help="the worker's transactions: measure with and without (default) or one of them",
    )
    ap.add_argument("--out", help="also write the JSON report here")
    args = ap.parse_args()

    with benchmark_broker() as bootstrap:
        prefix = f"bench-inf-{uuid.uuid4().hex[:6]}-"
        TopicAdmin(bootstrap, prefix).create(all_specs())
        settings = InferenceSettings.from_env(
            bootstrap_servers=bootstrap,
            topic_prefix=prefix,
            engine=args.engine,
            model_path=args.model_path,
            slots=args.slots,
            threads=args.threads,
            max_inflight=max(args.concurrency, 1) * 2,
        )
        modes = ["on", "off"] if args.transactions == "both" else [args.transactions]
        report = asyncio.run(bench(args, settings, modes))
    print(json.dumps(report, indent=2))
    for mode in modes:
        r = report[f"transactions_{mode}"]
        print(
            f"\ntransactions {mode}: tokens/s via Kafka / direct = {r['tokens_per_s_ratio']:.3f} "
            f"(target >= 0.9); added p50 = {r['added_p50_ms']:.1f} ms; same-prompt paired p50 = "
            f"{r['paired_added_ms_p50']:.1f} ms; transport (call - generation) p50 = "
            f"{r['transport_overhead_ms']['p50']:.1f} ms, p99 = "
            f"{r['transport_overhead_ms']['p99']:.1f} ms; committed readers see an answer "
            f"{r['committed_visible_after_ms']['p50']} ms (p50) after its caller"
        )
    if len(modes) == 2:
        on, off = report["transactions_on"], report["transactions_off"]
        print(
            f"\nexactly-once cost: added p50 {on['added_p50_ms'] - off['added_p50_ms']:+.1f} ms, "
            f"tokens/s ratio {on['tokens_per_s_ratio'] / off['tokens_per_s_ratio']:.3f} "
            "(transactions on / off)"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
