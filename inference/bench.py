"""``continuum infer bench``: load an OpenAI-compatible endpoint and report throughput/latency."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx

from inference.settings import InferenceSettings

PROMPTS = (
    "Hola, estoy buscando un Toyota Corolla 2018 en Santo Domingo.",
    "¿Cuánto cuesta una Honda CR-V 2020 con poco millaje?",
    "Quiero financiar una yipeta, ¿qué necesito?",
    "¿Tienen carros eléctricos disponibles?",
    "Me interesa el Hyundai Tucson, ¿puedo agendar una prueba de manejo?",
    "¿Aceptan mi carro como parte del pago?",
    "Busco algo económico para trabajar de Uber.",
    "¿El precio de la Kia Sportage es negociable?",
)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summarize(
    latencies_ms: list[float], tokens: int, wall_s: float, errors: dict[str, int]
) -> dict[str, Any]:
    return {
        "answered": len(latencies_ms),
        "errors": errors,
        "wall_s": round(wall_s, 3),
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / wall_s, 2) if wall_s > 0 else 0.0,
        "latency_ms": {
            "p50": round(percentile(latencies_ms, 50), 1),
            "p95": round(percentile(latencies_ms, 95), 1),
            "p99": round(percentile(latencies_ms, 99), 1),
            "mean": round(statistics.fmean(latencies_ms), 1) if latencies_ms else None,
        },
    }


async def run_bench(
    settings: InferenceSettings,
    *,
    url: str,
    requests: int,
    concurrency: int,
    max_tokens: int,
) -> dict[str, Any]:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    tokens = 0

    async with httpx.AsyncClient(base_url=url, timeout=settings.request_timeout_s + 5) as client:

        async def one(i: int) -> None:
            nonlocal tokens
            body = {
                "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "user": f"bench-{i}",
            }
            async with sem:
                t0 = time.perf_counter()
                resp = await client.post("/v1/chat/completions", json=body)
                elapsed = (time.perf_counter() - t0) * 1000
            if resp.status_code != 200:
                kind = resp.json().get("error", {}).get("type", str(resp.status_code))
                errors[kind] = errors.get(kind, 0) + 1
                return
            latencies.append(elapsed)
            tokens += resp.json()["usage"]["completion_tokens"]

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        wall = time.perf_counter() - t0
    return summarize(latencies, tokens, wall, errors)
