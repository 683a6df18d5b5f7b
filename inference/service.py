"""Process entry points: the worker (with its /metrics and /health) and the gateway."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inference.auth import ApiKeys
from inference.engines import Engine, make_engine
from inference.gateway import Gateway, GatewayConfig
from inference.metrics import LlmMetrics
from inference.settings import InferenceSettings
from inference.worker import InferenceWorker, WorkerConfig

log = logging.getLogger(__name__)


def engine_from_settings(s: InferenceSettings) -> Engine:
    options: dict[str, Any] = {
        "model_path": s.model_path or None,
        "model_version": s.model_version or None,
    }
    if s.engine == "llamacpp":
        options.update(slots=s.slots, n_ctx=s.n_ctx, threads=s.threads or None)
    elif s.engine == "vllm":
        options.update(
            max_concurrency=s.max_num_seqs,
            max_model_len=s.n_ctx,
            gpu_memory_utilization=s.gpu_memory_utilization,
        )
    elif s.engine == "echo":
        options.update(max_concurrency=s.max_num_seqs, token_ms=s.echo_token_ms)
    return make_engine(s.engine, **options)


def worker_from_settings(s: InferenceSettings, engine: Engine | None = None) -> InferenceWorker:
    return InferenceWorker(
        s,
        engine or engine_from_settings(s),
        WorkerConfig(
            group_id=s.group_id,
            worker_id=s.worker_id,
            max_inflight=s.max_inflight,
            emit_turns=s.emit_turns,
            answer_unrouted=s.answer_unrouted,
            drain_timeout_s=s.drain_timeout_s,
            heartbeat_s=s.heartbeat_s,
            transactions=s.transactions,
            transaction_interval_ms=s.transaction_interval_ms,
            stream_chunk_ms=s.stream_chunk_ms,
            stream_chunk_tokens=s.stream_chunk_tokens,
            background_slots=s.background_slots,
            serve_background=s.serve_background,
        ),
        metrics=LlmMetrics(s.metrics_prefix),
    )


def worker_app(worker: InferenceWorker) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(worker.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def health(_: web.Request) -> web.Response:
        status = worker.status()
        ok = bool(status["model_loaded"]) and worker.ready.is_set()
        return web.json_response(
            {"status": "ok" if ok else "starting", **status}, status=200 if ok else 503
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    return app


def _on_signals(loop: asyncio.AbstractEventLoop, stop: Any) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


async def serve_worker(s: InferenceSettings) -> None:
    worker = worker_from_settings(s)
    runner = web.AppRunner(worker_app(worker))
    await runner.setup()
    await web.TCPSite(runner, s.worker_host, s.worker_port).start()
    _on_signals(asyncio.get_running_loop(), worker.stop)
    try:
        await worker.run()
    finally:
        await runner.cleanup()


def api_keys(s: InferenceSettings) -> ApiKeys:
    """The gateway's keys: from CONTINUUM_GATEWAY_API_KEYS_FILE (re-read when it changes) or
    CONTINUUM_GATEWAY_API_KEYS."""
    path = s.secret_file("gateway_api_keys")
    keys = ApiKeys(
        "" if path else s.gateway_api_keys, path=path, rate_per_min=s.gateway_rate_limit_rpm
    )
    if keys.enabled:
        log.warning(
            "gateway: %d API key(s) (%s)%s",
            len(keys.names()),
            ", ".join(keys.names()),
            f", {s.gateway_rate_limit_rpm:g} requests/min each" if keys.rate_per_min else "",
        )
    else:
        log.warning("gateway: no API key configured; anyone who reaches the port may call it")
    return keys


async def serve_gateway(s: InferenceSettings) -> None:
    gateway = Gateway(
        s,
        GatewayConfig(
            host=s.gateway_host,
            port=s.gateway_port,
            reply_topic=s.reply_topic,
            timeout_s=s.request_timeout_s,
            models=(s.model_version,) if s.model_version else (),
        ),
        keys=api_keys(s),
    )
    runner = web.AppRunner(gateway.app())
    await runner.setup()
    await web.TCPSite(runner, s.gateway_host, s.gateway_port).start()
    log.warning("gateway on http://%s:%d/v1/chat/completions", s.gateway_host, s.gateway_port)
    stop = asyncio.Event()
    _on_signals(asyncio.get_running_loop(), stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
