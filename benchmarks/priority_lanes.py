"""Does background work (the LLM-as-judge, evaluation runs) delay users? User call latency through
the gateway and a real worker, in one run, three ways:

- ``alone``       user calls only;
- ``background``  the same user calls while judge-sized calls keep the engine busy on the
                  background lane (``service_tier: "flex"``);
- ``same lane``   the same judge load sent as ordinary user calls: what there would be without lanes.

Rounds rotate the three so machine noise hits them alike; user calls go one at a time with a short
pause (a person typing), judge calls ``--judge-concurrency`` at a time with a long rubric prompt.
Target: user p99 with background load within 10 % of alone.

    python benchmarks/priority_lanes.py [--rounds 3 --users 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._broker import benchmark_broker  # noqa: E402
from benchmarks.inference_overhead import start_worker  # noqa: E402
from continuum.admin import TopicAdmin  # noqa: E402
from continuum.topics import all_specs  # noqa: E402
from inference.bench import PROMPTS, percentile  # noqa: E402
from inference.gateway import Gateway, GatewayConfig  # noqa: E402
from inference.settings import InferenceSettings  # noqa: E402

RUBRIC = (
    "Eres un evaluador. Puntúa de 1 a 5 la respuesta del asistente de un concesionario en "
    "República Dominicana según: exactitud respecto a la pregunta, utilidad, tono adecuado para "
    "usuarios dominicanos, seguridad y ausencia de datos personales, e intento de captar el "
    "contacto del cliente. Responde solo con JSON: "
    '{"correctness":n,"helpfulness":n,"tone":n,"safety":n,"lead_capture":n,"reason":"..."}\n\n'
    "Pregunta del usuario: {q}\nRespuesta del asistente: Claro, tenemos varias opciones de "
    "{q} disponibles en Santo Domingo, con financiamiento desde 24 meses y prueba de manejo sin "
    "costo. ¿Desea que un asesor le contacte por WhatsApp para coordinar una visita?"
)
MODES = ("alone", "background", "same lane")


async def user_calls(gateway: Gateway, n: int, max_tokens: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        body = {
            "messages": [{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} ({tag}-{i})"}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        t0 = time.perf_counter()
        status, answer = await gateway.complete(body, {"X-Request-Id": uuid.uuid4().hex})
        if status != 200:
            raise RuntimeError(f"user call answered {status}: {answer}")
        out.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.2)
    return out


async def judge_load(
    gateway: Gateway, stop: asyncio.Event, concurrency: int, max_tokens: int, flex: bool
) -> int:
    done = 0

    async def one_loop(k: int) -> None:
        nonlocal done
        i = 0
        while not stop.is_set():
            q = PROMPTS[(k + i) % len(PROMPTS)]
            body: dict[str, Any] = {
                "messages": [{"role": "user", "content": RUBRIC.replace("{q}", f"{q} #{k}-{i}")}],
                "max_tokens": max_tokens,
                "temperature": 0,
            }
            if flex:
                body["service_tier"] = "flex"
            status, _ = await gateway.complete(body, {"X-Request-Id": uuid.uuid4().hex})
            done += status == 200
            i += 1

    await asyncio.gather(*(one_loop(k) for k in range(concurrency)))
    return done


async def bench(args: argparse.Namespace, settings: InferenceSettings) -> dict[str, Any]:
    gateway = Gateway(settings, GatewayConfig(timeout_s=600))
    await gateway.start()
    lat: dict[str, list[float]] = {m: [] for m in MODES}
    judged = {m: 0 for m in MODES}
    await user_calls(gateway, 3, args.max_tokens, "warm")
    for r in range(args.rounds):
        order = MODES[r % 3 :] + MODES[: r % 3]
        for mode in order:
            stop = asyncio.Event()
            load = None
            if mode != "alone":
                load = asyncio.ensure_future(
                    judge_load(
                        gateway,
                        stop,
                        args.judge_concurrency,
                        args.judge_tokens,
                        flex=mode == "background",
                    )
                )
                await asyncio.sleep(1.0)  # the engine is busy before the first user call
            values = await user_calls(gateway, args.users, args.max_tokens, f"{r}-{mode}")
            stop.set()
            if load is not None:
                judged[mode] += await load
            lat[mode] += values
            print(
                f"round {r + 1} {mode:>10}: user p50 {percentile(values, 50):7.1f} ms  "
                f"p99 {percentile(values, 99):7.1f} ms",
                flush=True,
            )
    await gateway.stop()
    report: dict[str, Any] = {
        "users_per_round": args.users,
        "rounds": args.rounds,
        "judge_concurrency": args.judge_concurrency,
        "judge_max_tokens": args.judge_tokens,
    }
    for mode in MODES:
        report[mode] = {
            "p50_ms": round(percentile(lat[mode], 50), 1),
            "p99_ms": round(percentile(lat[mode], 99), 1),
            "judge_calls_answered": judged[mode],
        }
    report["p99_ratio_background_vs_alone"] = round(
        report["background"]["p99_ms"] / report["alone"]["p99_ms"], 3
    )
    report["p99_ratio_same_lane_vs_alone"] = round(
        report["same lane"]["p99_ms"] / report["alone"]["p99_ms"], 3
    )
    return report


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--engine", default="llamacpp", choices=["llamacpp", "vllm"])
    ap.add_argument("--model-path", default="")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--users", type=int, default=20, help="user calls per round and mode")
    ap.add_argument("--max-tokens", type=int, default=16, help="a user call's max_tokens")
    ap.add_argument("--judge-concurrency", type=int, default=2)
    ap.add_argument("--judge-tokens", type=int, default=96)
    ap.add_argument("--slots", type=int, default=1, help="llama.cpp contexts")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", help="also write the JSON report here")
    args = ap.parse_args()
    with benchmark_broker() as bootstrap:
        prefix = f"bench-lanes-{uuid.uuid4().hex[:6]}-"
        TopicAdmin(bootstrap, prefix).create(all_specs())
        settings = InferenceSettings.from_env(
            bootstrap_servers=bootstrap,
            topic_prefix=prefix,
            engine=args.engine,
            model_path=args.model_path,
            slots=args.slots,
            threads=args.threads,
        )
        worker = start_worker(args, settings, transactions=True)
        try:
            report = asyncio.run(bench(args, settings))
        finally:
            worker.terminate()
            worker.wait(60)
    print(json.dumps(report, indent=2))
    print(
        f"\nuser p99 with judge load on the background lane / alone = "
        f"{report['p99_ratio_background_vs_alone']:.3f} (target <= 1.10); "
        f"on the same lane (no lanes) = {report['p99_ratio_same_lane_vs_alone']:.3f}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
