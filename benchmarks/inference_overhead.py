"""What Kafka adds to inference, in one run.

Part 1, transport (the way LLM gateways publish their overhead: against an upstream that answers
at once). The worker runs the ``echo`` engine (no model), so a call's latency is the path itself:

- Kafka path: the gateway's request/reply logic in this process (``Gateway.complete``) -> Kafka ->
  ``continuum infer worker --engine echo`` -> Kafka -> gateway, minus the echo engine called here.
- HTTP: an HTTP client here -> ``continuum infer gateway`` (its own process) -> Kafka -> worker ->
  Kafka -> gateway -> client, minus the same client calling an OpenAI-shaped echo server (its
  own process, no Kafka): what putting Continuum between a chatbot and its model adds.

Each at 1, 32 and 128 calls in flight, with the worker's transactions on and off. Targets for one
call at a time: added p50 <= 3 ms, p99 <= 10 ms.

Part 2, a real model (llama.cpp here; ``--engine vllm`` on a GPU): the same prompts through the
gateway logic -> Kafka -> worker -> Kafka versus the same engine called in-process, rounds
alternating so machine noise hits both alike; tokens/s via Kafka / direct (target >= 0.9), time
to first token of streamed calls through the gateway vs the engine's own first token, the
transport per call (call latency minus the worker's generation time), with transactions on and
off, and how long after its caller a ``read_committed`` reader (stage 1, the archive) sees an
answer.

    python benchmarks/inference_overhead.py                      # both parts, llama.cpp
    python benchmarks/inference_overhead.py --engine vllm --model-path models/smollm2-hf
    python benchmarks/inference_overhead.py --skip-model          # part 1 only
    python benchmarks/inference_overhead.py --hops --skip-model   # + where part 1's time goes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from confluent_kafka import OFFSET_END, TopicPartition  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from continuum import kafka as clients  # noqa: E402
from continuum.admin import TopicAdmin  # noqa: E402
from continuum.localkafka import free_port  # noqa: E402
from continuum.topics import all_specs, topic_spec  # noqa: E402
from inference.bench import PROMPTS, percentile  # noqa: E402
from inference.engines.echo import EchoEngine  # noqa: E402
from inference.gateway import Gateway, GatewayConfig  # noqa: E402
from inference.protocol import GenerationRequest, Sampling  # noqa: E402
from inference.service import engine_from_settings  # noqa: E402
from inference.settings import InferenceSettings  # noqa: E402
from schemas import AvroDeserializer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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
    # The answers' record (the gateway waits on its copy on inference.replies).
    lag = CommittedLag(settings, topic_spec("inference.responses").full_name(settings.topic_prefix))
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

    async def direct_ttft(text: str) -> float:
        req = GenerationRequest(uuid.uuid4().hex, ({"role": "user", "content": text},), sampling)
        first: list[float] = []
        t0 = time.perf_counter()
        await engine.generate(
            req, on_text=lambda _t, _n: first or first.append(time.perf_counter())
        )
        return (first[0] - t0) * 1000 if first else float("nan")

    async def gateway_ttft(text: str) -> float:
        body = {
            "messages": [{"role": "user", "content": text}],
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "stream": True,
        }
        t0 = time.perf_counter()
        call = gateway.open_stream(body, {"X-Request-Id": uuid.uuid4().hex})
        if isinstance(call, tuple):
            raise RuntimeError(f"gateway refused a streamed call: {call}")
        first = float("nan")
        try:
            async for data in call.events():
                if first == first or not data.startswith(b"data: {"):
                    continue
                delta = json.loads(data[6:]).get("choices", [{}])[0].get("delta") or {}
                if delta.get("content"):
                    first = (time.perf_counter() - t0) * 1000
        finally:
            call.close()
        return first

    for mode in modes:
        worker = start_worker(args, settings, transactions=mode == "on")
        try:
            answered_at.clear()
            lag.seen.clear()
            split["queue_wait_ms"].clear()
            result = await measure(args, direct, via_kafka, split, answered_at, lag, mode)
            # Time to first token of streamed calls, one at a time, alternating the two paths.
            ttft: dict[str, list[float]] = {"gateway": [], "engine": []}
            for i, text in enumerate(prompts(args.requests, 100)):
                pair = [("engine", direct_ttft), ("gateway", gateway_ttft)]
                for name, fn in pair if i % 2 else pair[::-1]:
                    ttft[name].append(await fn(text))
            result["ttft_ms"] = {
                name: {"p50": round(percentile(v, 50), 2), "p99": round(percentile(v, 99), 2)}
                for name, v in ttft.items()
            }
            result["ttft_added_ms_p50"] = round(
                percentile(ttft["gateway"], 50) - percentile(ttft["engine"], 50), 2
            )
            report[f"transactions_{mode}"] = result
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


# -- part 1: transport, against an engine that answers at once -----------------------------------

ECHO_WORKER = ["--engine", "echo", "--max-num-seqs", "256", "--emit-turns", "true"]
LEVELS = (1, 32, 128)
ECHO_TEXT = "busco una yipeta usada en Santiago con poco millaje y buen precio por favor"


def serve_echo(port: int) -> None:
    """The HTTP baseline: an OpenAI-shaped ``/v1/chat/completions`` answered by the echo engine
    in-process, no Kafka: what calling a model server directly costs."""
    from aiohttp import web

    engine = EchoEngine()

    async def complete(request: web.Request) -> web.Response:
        body = await request.json()
        req = GenerationRequest(
            uuid.uuid4().hex,
            tuple(body["messages"]),
            Sampling(max_tokens=int(body.get("max_tokens") or 16), temperature=0.0),
        )
        out = await engine.generate(req)
        return web.json_response(
            {
                "id": f"chatcmpl-{req.request_id}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": engine.model_version,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": out.text},
                        "finish_reason": out.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": out.prompt_tokens,
                    "completion_tokens": out.completion_tokens,
                    "total_tokens": out.prompt_tokens + out.completion_tokens,
                },
            }
        )

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def child_env(settings: InferenceSettings) -> dict[str, str]:
    """The environment of a child process (worker, gateway) on the benchmark's broker."""
    return {
        **os.environ,
        "CONTINUUM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "CONTINUUM_TOPIC_PREFIX": settings.topic_prefix,
        "PYTHONUNBUFFERED": "1",
    }


def start_gateway(settings: InferenceSettings, port: int) -> subprocess.Popen[bytes]:
    env = child_env(settings)
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "continuum.cli",
            "infer",
            "gateway",
            "--gateway-host",
            "127.0.0.1",
            "--gateway-port",
            str(port),
        ],
        env=env,
        cwd=ROOT,
    )
    wait_healthy(gateway, port, "gateway")
    return gateway


async def timed(call: Any, n: int, concurrency: int) -> tuple[list[float], float]:
    """Latencies (ms) of ``n`` calls with ``concurrency`` in flight, and calls per second."""
    sem = asyncio.Semaphore(concurrency)
    out: list[float] = []

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            await call(i)
            out.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return out, n / (time.perf_counter() - t0)


async def levels(
    args: argparse.Namespace, mode: str, path: str, baseline: Any, call: Any
) -> list[dict[str, Any]]:
    """One path at every concurrency level against its baseline, rounds alternating."""
    await timed(baseline, 30, 1)  # connections, code paths, the broker's JIT
    await timed(call, 30, 1)
    rows = []
    for level in LEVELS:
        n = max(args.transport_calls, 4 * level)
        base: list[float] = []
        lat: list[float] = []
        rates: list[float] = []
        for _ in range(2):
            b, _rate = await timed(baseline, n, level)
            c, rate = await timed(call, n, level)
            base += b
            lat += c
            rates.append(rate)
        row = {
            "transactions": mode,
            "path": path,
            "concurrency": level,
            "calls": len(lat),
            "p50_ms": round(percentile(lat, 50), 2),
            "p99_ms": round(percentile(lat, 99), 2),
            "baseline_p50_ms": round(percentile(base, 50), 2),
            "baseline_p99_ms": round(percentile(base, 99), 2),
            "added_p50_ms": round(percentile(lat, 50) - percentile(base, 50), 2),
            "added_p99_ms": round(percentile(lat, 99) - percentile(base, 99), 2),
            "calls_per_s": round(statistics.median(rates), 1),
        }
        print(
            f"transport transactions {mode} {path:>5} x{level:<3}: added p50 "
            f"{row['added_p50_ms']:6.2f} ms  p99 {row['added_p99_ms']:6.2f} ms  "
            f"(path {row['p50_ms']:.2f}/{row['p99_ms']:.2f}, baseline "
            f"{row['baseline_p50_ms']:.2f}/{row['baseline_p99_ms']:.2f}; "
            f"{row['calls_per_s']:.0f} calls/s)",
            flush=True,
        )
        rows.append(row)
    return rows


async def transport(
    args: argparse.Namespace, settings: InferenceSettings, modes: list[str]
) -> list[dict[str, Any]]:
    engine = EchoEngine()
    await engine.start()
    messages = ({"role": "user", "content": ECHO_TEXT},)
    body = {"messages": list(messages), "max_tokens": 16}

    async def direct(i: int) -> None:
        await engine.generate(GenerationRequest(uuid.uuid4().hex, messages, Sampling(16)))

    echo_port = free_port()
    echo = subprocess.Popen([sys.executable, __file__, "--serve-echo", str(echo_port)], cwd=ROOT)
    rows: list[dict[str, Any]] = []
    try:
        wait_healthy(echo, echo_port, "echo server")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            def over_http(url: str) -> Any:
                async def call(i: int) -> None:
                    async with http.post(url, json=body, headers={"X-Session-Id": f"s{i}"}) as r:
                        if r.status != 200:
                            raise RuntimeError(f"{url} answered {r.status}: {await r.text()}")
                        await r.read()

                return call

            for mode in modes:
                worker = start_worker(args, settings, transactions=mode == "on", engine=ECHO_WORKER)
                try:
                    gateway = Gateway(settings, GatewayConfig(timeout_s=60))
                    await gateway.start()

                    async def kafka(i: int, gateway: Gateway = gateway) -> None:
                        status, out = await gateway.complete(body, {"X-Session-Id": f"s{i}"})
                        if status != 200:
                            raise RuntimeError(f"gateway answered {status}: {out}")

                    try:
                        rows += await levels(args, mode, "kafka", direct, kafka)
                    finally:
                        await gateway.stop()
                    port = free_port()
                    served = start_gateway(settings, port)
                    try:
                        rows += await levels(
                            args,
                            mode,
                            "http",
                            over_http(f"http://127.0.0.1:{echo_port}/v1/chat/completions"),
                            over_http(f"http://127.0.0.1:{port}/v1/chat/completions"),
                        )
                    finally:
                        served.terminate()
                        served.wait(30)
                finally:
                    worker.terminate()
                    worker.wait(60)
    finally:
        echo.terminate()
        echo.wait(30)
    return rows


# -- where the time goes: per-hop stamps ----------------------------------------------------------
# CLOCK_MONOTONIC (time.perf_counter on Linux) is one clock for every process of the host, so
# stamps taken in the worker and in the gateway subtract. The worker runs as a child of this
# script with its methods wrapped (``--traced-worker``); production code carries no tracing.


def traced_worker(stamps: str, argv: list[str]) -> int:
    """``continuum infer worker`` with a stamp per hop of each request written to ``stamps``."""
    import inference.worker as worker_mod
    from continuum.cli import main as cli

    out = open(stamps, "w", buffering=1)  # noqa: SIM115 (open for the process's life)
    W = worker_mod.InferenceWorker
    consume = worker_mod.consume_available

    def polled(consumer: Any, n: int, timeout: float) -> list[Any]:
        msgs = consume(consumer, n, timeout)
        now = time.perf_counter()
        for m in msgs:
            out.write(f"polled {(m.key() or b'').decode()} {now}\n")
        return msgs

    start, generate, copy = W._start, W._generate, W._copy_to_caller

    def _start(self: Any, msg: Any) -> None:
        out.write(f"started {(msg.key() or b'').decode()} {time.perf_counter()}\n")
        start(self, msg)

    async def _generate(self: Any, gen: Any, lane: str, stream: Any) -> Any:
        out.write(f"engine {gen.request_id} {time.perf_counter()}\n")
        result = await generate(self, gen, lane, stream)
        out.write(f"generated {gen.request_id} {time.perf_counter()}\n")
        return result

    def _copy(self: Any, topic: str, reply: dict[str, Any]) -> None:
        out.write(f"replied {reply['request_id']} {time.perf_counter()}\n")
        copy(self, topic, reply)

    worker_mod.consume_available = polled
    W._start, W._generate, W._copy_to_caller = _start, _generate, _copy  # type: ignore[method-assign]
    return cli(["infer", "worker", *argv])


HOPS = (
    ("gateway -> worker's poll", "sent", "polled"),
    ("poll -> worker's loop", "polled", "started"),
    ("loop -> engine", "started", "engine"),
    ("engine (echo)", "engine", "generated"),
    ("engine -> answer sent", "generated", "replied"),
    ("worker -> gateway's listener", "replied", "received"),
    ("listener -> caller", "received", "resolved"),
)


async def hops(args: argparse.Namespace, settings: InferenceSettings) -> dict[str, Any]:
    """Echo calls one at a time through the gateway logic and a traced worker (transactions
    on): back to back, then 50 ms apart (the idle wake-ups of a quiet service)."""
    stamps = Path(tempfile.mkdtemp(prefix="continuum-hops-")) / "worker.txt"
    port = free_port()
    env = child_env(settings)
    worker = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--traced-worker",
            str(stamps),
            "--",
            *ECHO_WORKER,
            "--worker-port",
            str(port),
            "--worker-host",
            "127.0.0.1",
            "--transactions",
            "true",
        ],
        env=env,
        cwd=ROOT,
    )
    gateway = Gateway(settings, GatewayConfig(timeout_s=60))
    seen: dict[str, dict[str, float]] = {}
    deliver = gateway.deliver

    def received(response: dict[str, Any]) -> None:
        seen.setdefault(response["request_id"], {})["received"] = time.perf_counter()
        deliver(response)

    gateway.deliver = received  # type: ignore[method-assign]
    report: dict[str, Any] = {}
    try:
        wait_healthy(worker, port, "traced worker")
        await gateway.start()
        body = {"messages": [{"role": "user", "content": ECHO_TEXT}], "max_tokens": 16}
        for name, n, gap in (
            ("back_to_back", args.transport_calls * 2, 0.0),
            ("gaps_50ms", 150, 0.05),
        ):
            ids = []
            for i in range(30 + n):
                rid = uuid.uuid4().hex
                t0 = time.perf_counter()
                status, out = await gateway.complete(
                    body, {"X-Request-Id": rid, "X-Session-Id": rid}
                )
                if status != 200:
                    raise RuntimeError(f"gateway answered {status}: {out}")
                stamp = seen.setdefault(rid, {})
                stamp.update(sent=t0, resolved=time.perf_counter())
                if i >= 30:  # the first ones warm up
                    ids.append(rid)
                if gap:
                    await asyncio.sleep(gap)
            await asyncio.sleep(0.3)
            for line in stamps.read_text().splitlines():
                what, rid, at = line.split()
                if rid in seen:
                    seen[rid][what] = float(at)
            rows = {}
            for label, a, b in HOPS:
                v = [(seen[r][b] - seen[r][a]) * 1000 for r in ids if a in seen[r] and b in seen[r]]
                rows[label] = {
                    "p50": round(percentile(v, 50), 3),
                    "p99": round(percentile(v, 99), 3),
                }
            total = [(seen[r]["resolved"] - seen[r]["sent"]) * 1000 for r in ids]
            rows["total"] = {
                "p50": round(percentile(total, 50), 3),
                "p99": round(percentile(total, 99), 3),
            }
            report[name] = rows
            print(
                f"\nhops, one echo call at a time, {name.replace('_', ' ')} ({len(ids)} calls), ms:"
            )
            for label, r in rows.items():
                print(f"  {label:30s} p50 {r['p50']:7.3f}  p99 {r['p99']:7.3f}", flush=True)
    finally:
        await gateway.stop()
        worker.terminate()
        worker.wait(60)
    return report


def start_worker(
    args: argparse.Namespace,
    settings: InferenceSettings,
    *,
    transactions: bool,
    engine: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """``continuum infer worker`` with the benchmark's engine, or ``engine`` (its flags)."""
    port = free_port()
    env = child_env(settings)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "continuum.cli",
            "infer",
            "worker",
            *(
                engine
                or [
                    "--engine",
                    args.engine,
                    "--model-path",
                    args.model_path,
                    "--slots",
                    str(args.slots),
                    "--threads",
                    str(args.threads),
                    "--emit-turns",
                    "false",
                ]
            ),
            "--worker-port",
            str(port),
            "--worker-host",
            "127.0.0.1",
            "--transactions",
            "true" if transactions else "false",
        ],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    wait_healthy(worker, port, "inference worker")
    return worker


def wait_healthy(proc: subprocess.Popen[bytes], port: int, what: str) -> None:
    deadline = time.time() + 600
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.2)


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
    ap.add_argument(
        "--transport-calls", type=int, default=300, help="part 1: calls per round and level"
    )
    ap.add_argument("--skip-model", action="store_true", help="part 1 only (no model needed)")
    ap.add_argument("--skip-transport", action="store_true", help="part 2 only")
    ap.add_argument("--hops", action="store_true", help="also stamp each hop of echo calls")
    ap.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)  # the HTTP baseline
    ap.add_argument("--traced-worker", help=argparse.SUPPRESS)  # a worker stamping its hops
    ap.add_argument("--out", help="also write the JSON report here")
    if "--traced-worker" in sys.argv:
        at = sys.argv.index("--traced-worker")
        rest = sys.argv[at + 3 :] if sys.argv[at + 2 : at + 3] == ["--"] else sys.argv[at + 2 :]
        return traced_worker(sys.argv[at + 1], rest)
    args = ap.parse_args()
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return 0

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
        report: dict[str, Any] = {}
        if args.hops:
            report["hops"] = asyncio.run(hops(args, settings))
        if not args.skip_transport:
            report["transport"] = asyncio.run(transport(args, settings, modes))
        if not args.skip_model:
            report.update(asyncio.run(bench(args, settings, modes)))
    print(json.dumps(report, indent=2))
    if report.get("transport"):
        print("\ntransport (echo engine): added latency vs the same call without Kafka, ms")
        print("transactions  path   in flight   p50     p99    calls/s")
        for row in report["transport"]:
            print(
                f"{row['transactions']:>12}  {row['path']:<5} {row['concurrency']:>9}  "
                f"{row['added_p50_ms']:6.2f}  {row['added_p99_ms']:6.2f}  {row['calls_per_s']:8.0f}"
            )
        ones = [r for r in report["transport"] if r["concurrency"] == 1]
        for r in ones:
            ok = r["added_p50_ms"] <= 3 and r["added_p99_ms"] <= 10
            print(
                f"one call at a time, transactions {r['transactions']}, {r['path']}: "
                f"p50 {r['added_p50_ms']:.2f} ms (target <= 3), p99 {r['added_p99_ms']:.2f} ms "
                f"(target <= 10): {'met' if ok else 'NOT met'}"
            )
    for mode in modes if not args.skip_model else []:
        r = report[f"transactions_{mode}"]
        print(
            f"\ntransactions {mode}: tokens/s via Kafka / direct = {r['tokens_per_s_ratio']:.3f} "
            f"(target >= 0.9); added p50 = {r['added_p50_ms']:.1f} ms; same-prompt paired p50 = "
            f"{r['paired_added_ms_p50']:.1f} ms; transport (call - generation) p50 = "
            f"{r['transport_overhead_ms']['p50']:.1f} ms, p99 = "
            f"{r['transport_overhead_ms']['p99']:.1f} ms; committed readers see an answer "
            f"{r['committed_visible_after_ms']['p50']} ms (p50) after its caller; TTFT through "
            f"the gateway p50 {r['ttft_ms']['gateway']['p50']:.1f} ms vs the engine's "
            f"{r['ttft_ms']['engine']['p50']:.1f} ms (+{r['ttft_added_ms_p50']:.1f})"
        )
    if len(modes) == 2 and not args.skip_model:
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
