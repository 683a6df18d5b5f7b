"""``continuum model-server``: the dispatch model over HTTP with the seed's endpoints.

Under ``/api/v2/dispatch``: ``POST /predict`` (one request, in ``{"features": {...}}`` or bare),
``POST /predict/batch`` (``{"instances": [...]}``; a bad row gets ``{"error": ...}`` in its place
and the others are served), ``GET /health``, ``GET /model/info`` (version, training metrics),
``GET /model/feature-importance``; ``GET /metrics`` for Prometheus. Scoring runs on a thread so
the event loop keeps answering health checks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from inference.dispatch.features import DispatchRequestError
from inference.dispatch.model import DispatchModel

log = logging.getLogger(__name__)

PREFIX = "/api/v2/dispatch"
MAX_BATCH = 1000


def _request_of(body: Any) -> Any:
    """A single call's request: ``{"features": {...}}`` (MLClient) or the request itself."""
    if isinstance(body, Mapping) and "features" in body and "drivers" not in body:
        return body["features"]
    return body


def make_app(model: DispatchModel, *, model_dir: Path | None = None) -> web.Application:
    started = time.time()
    registry = CollectorRegistry()
    calls = Counter(
        "continuum_model_server_predictions_total",
        "Predictions answered, by outcome (ok, bad_request, no_driver)",
        ["outcome"],
        registry=registry,
    )
    seconds = Histogram(
        "continuum_model_server_predict_seconds",
        "Time to score one request",
        registry=registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
    )

    def one(req: Any) -> dict[str, Any]:
        t = time.perf_counter()
        try:
            answer = model.predict(req)
        except DispatchRequestError as exc:
            calls.labels("bad_request").inc()
            return {"error": str(exc), "status": 400}
        except LookupError as exc:
            calls.labels("no_driver").inc()
            return {"error": str(exc), "status": 422}
        seconds.observe(time.perf_counter() - t)
        calls.labels("ok").inc()
        return answer

    async def predict(request: web.Request) -> web.Response:
        body = await _json(request)
        answer = await asyncio.to_thread(one, _request_of(body))
        status = answer.pop("status", 200)
        return web.json_response(answer, status=status)

    async def batch(request: web.Request) -> web.Response:
        body = await _json(request)
        rows = body.get("instances") if isinstance(body, Mapping) else None
        if not isinstance(rows, list):
            raise _bad("instances must be a list of dispatch requests")
        if len(rows) > MAX_BATCH:
            raise _bad(f"instances has {len(rows)} rows, at most {MAX_BATCH} per call")

        def all_rows() -> list[dict[str, Any]]:
            out = []
            for i, row in enumerate(rows):
                answer = one(row)
                if "error" in answer:
                    answer = {"error": f"instances[{i}]: {answer['error']}"}
                out.append(answer)
            return out

        answers = await asyncio.to_thread(all_rows)
        return web.json_response(
            {"predictions": answers, "errors": sum("error" in a for a in answers)}
        )

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "HEALTHY",
                "model_name": "dispatch",
                "model_version": model.version,
                "uptime_s": round(time.time() - started, 1),
            }
        )

    async def info(request: web.Request) -> web.Response:
        files = {}
        if model_dir is not None:
            for f in ("model.pkl", "info.json"):
                p = model_dir / f
                if p.exists():
                    files[f] = {
                        "bytes": p.stat().st_size,
                        "modified_ms": int(p.stat().st_mtime * 1000),
                    }
        return web.json_response({**model.info, "files": files})

    async def importance(request: web.Request) -> web.Response:
        return web.json_response(
            {"model_version": model.version, "feature_importance": model.info["feature_importance"]}
        )

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_post(f"{PREFIX}/predict", predict)
    app.router.add_post(f"{PREFIX}/predict/batch", batch)
    app.router.add_get(f"{PREFIX}/health", health)
    app.router.add_get(f"{PREFIX}/model/info", info)
    app.router.add_get(f"{PREFIX}/model/feature-importance", importance)
    app.router.add_get("/metrics", metrics)
    return app


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise _bad(f"body is not JSON: {exc}") from exc


async def serve(model: DispatchModel, host: str, port: int, model_dir: Path | None = None) -> None:
    """Serve until cancelled (SIGTERM/SIGINT in the CLI)."""
    runner = web.AppRunner(make_app(model, model_dir=model_dir), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("dispatch model %s serving on http://%s:%d%s", model.version, host, port, PREFIX)
    print(f"model server {model.version} on http://{host}:{port}{PREFIX}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
