"""The chatbot service's side of the inference path: real questions through the gateway."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import httpx

QUESTIONS = (
    "Klk, busco una yipeta Toyota RAV4 2019, ¿cuánto sale?",
    "¿Tienen carros financiados con poco inicial?",
    "Quiero vender mi Honda Civic 2017, ¿cómo hago?",
    "¿Dónde queda el dealer y a qué hora abren el sábado?",
    "Ta bien, mándame info del Hyundai Tucson por WhatsApp",
)


@dataclass
class ChatStats:
    ok: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    last: str = ""


def chat_loop(
    gateway_url: str, model: str, stats: ChatStats, stop: threading.Event, every_s: float
) -> None:
    """The chatbot service's side of the inference path: real questions through the gateway
    (OpenAI API) -> inference.requests -> worker -> inference.responses, one every ``every_s``.
    The calls name the demo model, so the simulated v1-vs-v2 experiment does not route them to
    versions no worker here serves."""
    i = 0
    with httpx.Client(base_url=gateway_url, timeout=60) as http:
        while not stop.is_set():
            q = QUESTIONS[i % len(QUESTIONS)]
            i += 1
            t0 = time.monotonic()
            try:
                r = http.post(
                    "/v1/chat/completions",
                    json={
                        "model": model,
                        "messages": [{"role": "user", "content": q}],
                        "max_tokens": 40,
                    },
                    headers={"X-Session-Id": f"demo-{i // 3}"},
                )
                if r.status_code == 200:
                    stats.ok += 1
                    stats.latencies.append((time.monotonic() - t0) * 1000)
                    stats.last = r.json()["choices"][0]["message"]["content"].strip()
                else:
                    stats.errors += 1
                    stats.last = f"HTTP {r.status_code}: {r.text[:120]}"
            except httpx.HTTPError as exc:
                stats.errors += 1
                stats.last = f"{type(exc).__name__}: {exc}"
            stop.wait(every_s)
