"""The chatbot seed's LLM-server metrics (``okla_llm_*``), with a configurable prefix.

Names, types and the 11 latency buckets are the seed's, so its Grafana dashboard and alert rules
keep working. Continuum adds the latency split the seed could not see (queue wait, time to first
token) and the worker's own counters (redeliveries skipped, dead letters), under the same prefix.
"""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

# 11 buckets (ms), from a fast cached answer to the seed's 30 s service timeout and beyond.
DURATION_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 15000, 30000, 60000)
DEFAULT_PREFIX = "okla_llm"


class LlmMetrics:
    def __init__(
        self, prefix: str = DEFAULT_PREFIX, registry: CollectorRegistry | None = None
    ) -> None:
        self.prefix = prefix
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # process_* (RSS/VMS, CPU, open fds): the seed's system-resources panels read these.
        ProcessCollector(registry=r)
        p = prefix
        self.started = time.time()
        self.requests = Counter(f"{p}_requests_total", "Total de requests", registry=r)
        self.success = Counter(f"{p}_requests_success_total", "Requests exitosas", registry=r)
        self.errors = Counter(
            f"{p}_requests_error_total", "Requests fallidas (por tipo)", ["error_type"], registry=r
        )
        self.duration = Histogram(
            f"{p}_response_duration_ms",
            "Latencia de respuesta en ms (desde la petición hasta la respuesta)",
            buckets=DURATION_BUCKETS_MS,
            registry=r,
        )
        self.tokens = Counter(f"{p}_tokens_total", "Tokens totales", registry=r)
        self.prompt_tokens = Counter(f"{p}_prompt_tokens_total", "Tokens de prompt", registry=r)
        self.completion_tokens = Counter(
            f"{p}_completion_tokens_total", "Tokens de completion", registry=r
        )
        self.model_loaded = Gauge(f"{p}_model_loaded", "Modelo cargado (1/0)", registry=r)
        self.uptime = Gauge(f"{p}_uptime_seconds", "Uptime del server", registry=r)
        self.uptime.set_function(lambda: time.time() - self.started)
        self.active = Gauge(f"{p}_active_requests", "Requests en vuelo", registry=r)
        self._recent: deque[float] = deque(maxlen=100)
        self.avg_ms = Gauge(
            f"{p}_avg_response_time_ms", "Promedio rolling de latencia (últimas 100)", registry=r
        )
        self.avg_ms.set_function(
            lambda: sum(self._recent) / len(self._recent) if self._recent else 0.0
        )
        self.model_info = Info(f"{p}_model", "Metadatos del modelo", registry=r)
        # Continuum's additions.
        self.queue_wait = Histogram(
            f"{p}_queue_wait_ms",
            "Espera en cola en ms (desde la petición hasta que el motor empieza)",
            buckets=DURATION_BUCKETS_MS,
            registry=r,
        )
        self.ttft = Histogram(
            f"{p}_time_to_first_token_ms",
            "Tiempo hasta el primer token en ms",
            buckets=DURATION_BUCKETS_MS,
            registry=r,
        )
        self.cancelled = Counter(
            f"{p}_cancelled_total",
            "Respuestas en streaming detenidas porque el cliente se fue",
            registry=r,
        )
        self.chunks = Counter(
            f"{p}_stream_chunks_total",
            "Trozos de texto publicados en inference.chunks",
            registry=r,
        )
        self.redeliveries = Counter(
            f"{p}_redeliveries_skipped_total",
            "Peticiones ya respondidas que llegaron otra vez y no se generaron de nuevo",
            registry=r,
        )
        self.dead_letters = Counter(
            f"{p}_dead_letters_total",
            "Peticiones ilegibles o inválidas enviadas al DLQ",
            registry=r,
        )
        self.lane_requests = Counter(
            f"{p}_lane_requests_total",
            "Peticiones generadas por carril (user, background)",
            ["lane"],
            registry=r,
        )
        self.preemptions = Counter(
            f"{p}_preemptions_total",
            "Generaciones de segundo plano detenidas para dar paso a un usuario (se repiten luego)",
            registry=r,
        )

    def set_model(self, info: dict[str, str]) -> None:
        self.model_info.info(info)
        self.model_loaded.set(1)

    def unload(self) -> None:
        self.model_loaded.set(0)

    def observe(
        self,
        *,
        total_ms: float,
        error_type: str | None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        queue_wait_ms: float | None = None,
        ttft_ms: float | None = None,
    ) -> None:
        """Count one answered request (success or error)."""
        self.requests.inc()
        if error_type is None:
            self.success.inc()
        else:
            self.errors.labels(error_type=error_type).inc()
        self.duration.observe(total_ms)
        self._recent.append(total_ms)
        if prompt_tokens or completion_tokens:
            self.prompt_tokens.inc(prompt_tokens)
            self.completion_tokens.inc(completion_tokens)
            self.tokens.inc(prompt_tokens + completion_tokens)
        if queue_wait_ms is not None:
            self.queue_wait.observe(queue_wait_ms)
        if ttft_ms is not None:
            self.ttft.observe(ttft_ms)
