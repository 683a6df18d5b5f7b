"""JSON web views over the live tables and views, served by Faust's web server.

Reads are open; mutating endpoints need ``Authorization: Bearer <CONTINUUM_API_TOKEN>``. Keyed
views (one experiment, one model's feedback) are routed to the worker that owns the key."""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web as aioweb
from faust.web import Request, Response, View
from prometheus_client import generate_latest

from streams.agents.alerts import send_request
from streams.logic.alerts import resolve_request
from streams.logic.drift import DIRECTIONS
from streams.logic.health import check_health
from streams.logic.partials import experiment_group, model_group, prediction_group
from streams.logic.thresholds import GLOBAL_ONLY, in_force
from streams.pipeline import Pipeline, key_partition


def _authorized(pipe: Pipeline, request: Request) -> bool:
    token = pipe.settings.api_token
    header = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(header, f"Bearer {token}")


# Reads that stay open with a read token set: probes, Prometheus, the dashboard page itself.
OPEN_READS = ("/health/", "/metrics", "/dashboard/")


def read_allowed(pipe: Pipeline, method: str, path: str, header: str) -> bool:
    """Whether a request may read: no read token configured, an open path, or the read token
    or API token presented (both compared in constant time). Mutations check ``_authorized``."""
    token = getattr(pipe.settings, "views_read_token", "")
    if not token or method not in ("GET", "HEAD") or path.startswith(OPEN_READS):
        return True
    ok = hmac.compare_digest(header.encode(), f"Bearer {token}".encode())
    api = pipe.settings.api_token
    ok |= bool(api) and hmac.compare_digest(header.encode(), f"Bearer {api}".encode())
    return ok


def owner_url(pipe: Pipeline, table: Any, key: str) -> str | None:
    """URL of the worker whose table partition holds ``key`` (Kafka's default partitioner on the
    serialized key, as the partials topic was keyed), or None when it is this worker or unknown."""
    partition = key_partition(table, key)
    topic = table.changelog_topic.get_topic_name()
    me = str(pipe.app.conf.canonical_url).rstrip("/")
    for url, topics in pipe.app.router.table_metadata(table.name).items():
        if partition in topics.get(topic, ()):
            return None if str(url).rstrip("/") == me else str(url).rstrip("/")
    return None


async def _routed(
    pipe: Pipeline,
    table: Any,
    key: str,
    view: View,
    request: Request,
    local: Callable[[], Awaitable[Response]],
) -> Response:
    """Answer from this worker or forward the request to the key's owner."""
    if request.headers.get("X-Continuum-Routed") or (url := owner_url(pipe, table, key)) is None:
        return await local()
    target = f"{url}{request.path}"
    headers = {"X-Continuum-Routed": "1"}
    if "Authorization" in request.headers:  # the owner checks the read token too
        headers["Authorization"] = request.headers["Authorization"]
    async with pipe.app.http_client.get(target, headers=headers) as resp:
        return view.bytes(await resp.read(), status=resp.status, content_type="application/json")


def _health(pipe: Pipeline) -> dict[str, Any]:
    now = int(time.time() * 1000)
    fb_rates, low_rates = [], []
    with pipe.live.lock:
        for (_model, _v, signal, det), ev in pipe.live.signals.items():
            if det != "window":
                continue
            if signal == "fallback_rate_increase":
                fb_rates.append(ev["value"])
            if signal == "confidence_drop" and "low_confidence_rate" in ev.get("details", {}):
                low_rates.append(float(ev["details"]["low_confidence_rate"]))
        lag = sum(pipe.lag.values()) if pipe.lag else None
        heartbeats = dict(pipe.live.heartbeats)
    report = check_health(
        now_ms=now,
        fallback_rate=max(fb_rates) if fb_rates else None,
        low_confidence_rate=max(low_rates) if low_rates else None,
        heartbeats=heartbeats,
        consumer_lag=lag,
        thresholds=pipe.health_thresholds,
    )
    if pipe.kafka_down_since is not None:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pipe.kafka_down_since / 1000))
        reason = f"Kafka unreachable since {since}"
        report["checks"]["kafka"] = {"status": "UNHEALTHY", "reason": reason, "value": since}
        report["reasons"].append(f"kafka: {reason}")
        report["status"] = "UNHEALTHY"
    pipe.metrics.health.set({"HEALTHY": 0, "DEGRADED": 1, "UNHEALTHY": 2}[report["status"]])
    # The input partitions this worker's stage 1 folds (empty until its consumer joined).
    report["partitions"] = sorted(pipe.stage1_assigned)
    return report


DASHBOARD = resources.files("streams") / "static" / "dashboard.html"


def _with_why(signal: dict[str, Any]) -> dict[str, Any]:
    """A signal with its attribution as data (``what_changed``: every segment's contribution,
    largest first) besides the JSON string the event carries."""
    raw = (signal.get("details") or {}).get("attribution")
    return {**signal, "what_changed": json.loads(raw)} if raw else signal


def register(pipe: Pipeline) -> None:
    app = pipe.app

    page = DASHBOARD.read_text(encoding="utf-8")  # read once, not per request

    @aioweb.middleware
    async def read_token(request: Any, handler: Any) -> Any:
        if not read_allowed(
            pipe, request.method, request.path, request.headers.get("Authorization", "")
        ):
            return aioweb.json_response(
                {"error": "missing or wrong bearer token (reads need the views read token)"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="continuum"'},
            )
        return await handler(request)

    app.web.web_app.middlewares.append(read_token)

    @app.page("/dashboard/")
    class Dashboard(View):
        """The live page: static HTML/JS polling the JSON views below."""

        async def get(self, request: Request) -> Response:
            return self.html(page)

    @app.page("/drift/")
    class Drift(View):
        async def get(self, request: Request) -> Response:
            with pipe.live.lock:
                by_model: dict[str, list[dict[str, Any]]] = {}
                for (model, _v, _s, _d), ev in sorted(pipe.live.signals.items()):
                    by_model.setdefault(model, []).append(ev)
                baselines = dict(pipe.live.baselines)
            return self.json(
                {
                    "models": by_model,
                    "baselines": baselines,
                    "thresholds": pipe.cfg.drift.to_dict(),
                    "directions": DIRECTIONS,
                    "window_s": pipe.settings.window_s,
                    "hop_s": pipe.settings.hop_s,
                }
            )

    @app.page("/drift/history/")
    class DriftHistory(View):
        async def get(self, request: Request) -> Response:
            model, signal = request.query.get("model"), request.query.get("signal")
            with pipe.live.lock:
                rows = [
                    r
                    for r in pipe.live.signal_history
                    if (not model or r["model_version"] == model)
                    and (not signal or r["signal"] == signal)
                ]
            return self.json({"points": rows[-2000:]})

    @app.page("/drift/{model}/")
    class DriftModel(View):
        async def get(self, request: Request, model: str) -> Response:
            with pipe.live.lock:
                sig = [ev for (m, *_), ev in sorted(pipe.live.signals.items()) if m == model]
                base = pipe.live.baselines.get(model)
            if not sig and base is None:
                return self.json({"error": f"no drift data for model {model!r}"}, status=404)
            return self.json(
                {"model_version": model, "signals": [_with_why(ev) for ev in sig], "baseline": base}
            )

    @app.page("/ab/")
    class Experiments(View):
        async def get(self, request: Request) -> Response:
            with pipe.live.lock:
                return self.json({"experiments": list(pipe.live.experiments.values())})

        async def post(self, request: Request) -> Response:
            if not _authorized(pipe, request):
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            try:
                body = json.loads(await request.text())
                ev = {
                    "event_id": str(uuid.uuid4()),
                    "event_time": int(time.time() * 1000),
                    "status": "RUNNING",
                    "metadata": {},
                    **body,
                }
                ev.setdefault("name", ev.get("experiment_id"))
                sent = await pipe.outputs.send("Experiment", ev)
            except (ValueError, KeyError) as exc:
                return self.json({"error": str(exc)}, status=400)
            return self.json({"created": sent}, status=201)

    @app.page("/ab/{experiment}/")
    class Experiment(View):
        async def get(self, request: Request, experiment: str) -> Response:
            group = experiment_group(experiment)

            async def local() -> Response:
                result = pipe.ab_results.get(group)
                if result is None:
                    return self.json(
                        {"error": f"no A/B data for experiment {experiment!r}"}, status=404
                    )
                return self.json({k: v for k, v in result.items() if not k.startswith("_")})

            return await _routed(pipe, pipe.ab_results, group, self, request, local)

    @app.page("/ab/{experiment}/stop/")
    class StopExperiment(View):
        async def post(self, request: Request, experiment: str) -> Response:
            if not _authorized(pipe, request):
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            current = pipe.live.experiments.get(experiment)
            if current is None:
                return self.json({"error": f"unknown experiment {experiment!r}"}, status=404)
            ev = {
                **current,
                "event_id": str(uuid.uuid4()),
                "event_time": int(time.time() * 1000),
                "status": "STOPPED",
            }
            return self.json({"stopped": await pipe.outputs.send("Experiment", ev)})

    @app.page("/alerts/active/")
    class AlertsActive(View):
        async def get(self, request: Request) -> Response:
            with pipe.live.lock:
                return self.json({"alerts": list(pipe.live.alerts_open.values())})

    @app.page("/alerts/history/")
    class AlertsHistory(View):
        async def get(self, request: Request) -> Response:
            with pipe.live.lock:
                return self.json({"alerts": list(pipe.live.alert_history)[-500:]})

    @app.page("/alerts/stats/")
    class AlertsStats(View):
        async def get(self, request: Request) -> Response:
            with pipe.live.lock:
                by_sev: dict[str, int] = {}
                for a in pipe.live.alerts_open.values():
                    by_sev[a["severity"]] = by_sev.get(a["severity"], 0) + 1
                return self.json(
                    {
                        "open": len(pipe.live.alerts_open),
                        "open_by_severity": by_sev,
                        "raised": dict(pipe.live.alert_counts),
                        "history_size": len(pipe.live.alert_history),
                    }
                )

    @app.page("/alerts/resolve/{key}/")
    class AlertsResolve(View):
        """An operator's resolve: a request to the key's owner, the same path as an automatic
        resolve (a breach that continues opens a new alert at the next window)."""

        async def post(self, request: Request, key: str) -> Response:
            if not _authorized(pipe, request):
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            with pipe.live.lock:
                current = pipe.live.alerts_open.get(key)
            if current is None:
                return self.json({"error": f"no open alert with key {key!r}"}, status=404)
            req = resolve_request(
                key, int(time.time() * 1000), "resolved by an operator", source="api"
            )
            sent = await send_request(pipe, req)
            return self.json({"resolving": current["alert_id"], "request": sent}, status=202)

    @app.page("/thresholds/")
    class ThresholdsView(View):
        """The global thresholds in force on this worker and every model's overrides."""

        async def get(self, request: Request) -> Response:
            base, sources = in_force(pipe.global_thresholds)
            with pipe.live.lock:
                models = {m: dict(ev) for m, ev in pipe.live.thresholds.items()}
            return self.json(
                {
                    "global": base.values(),
                    "sources": sources,
                    "models": models,
                    "per_worker_only": sorted(GLOBAL_ONLY),
                }
            )

    @app.page("/thresholds/{model}/")
    class ModelThresholds(View):
        async def get(self, request: Request, model: str) -> Response:
            overrides = pipe.model_overrides(model)
            t, sources = in_force(pipe.global_thresholds, overrides)
            return self.json({"model_version": model, "values": t.values(), "sources": sources})

    @app.page("/health/")
    class Health(View):
        async def get(self, request: Request) -> Response:
            report = _health(pipe)
            return self.json(report, status=200 if report["status"] != "UNHEALTHY" else 503)

    @app.page("/drift/{model}/semantic/")
    class Semantic(View):
        """The newest window's user queries against the baseline's, in 2-D, new topics marked
        (semantic drift; the dashboard draws it)."""

        async def get(self, request: Request, model: str) -> Response:
            group = model_group(model)

            async def local() -> Response:
                state = pipe.group_state.get(group) or {}
                if "semantic" not in state:
                    return self.json(
                        {"error": f"no semantic drift picture for model {model!r} yet"},
                        status=404,
                    )
                return self.json({"model_version": model, **state["semantic"]})

            return await _routed(pipe, pipe.group_state, group, self, request, local)

    @app.page("/feedback/{model}/")
    class Feedback(View):
        async def get(self, request: Request, model: str) -> Response:
            group = model_group(model)

            async def local() -> Response:
                state = pipe.group_state.get(group)
                if not state or not state.get("feedback"):
                    return self.json({"error": f"no feedback for model {model!r}"}, status=404)
                return self.json({"model_version": model, **state["feedback"]})

            return await _routed(pipe, pipe.group_state, group, self, request, local)

    @app.page("/predictions/{model}/")
    class Predictions(View):
        """A predictive model (Prediction/Outcome events): its newest window's statistics,
        baseline, outcomes and accuracy, and the retrain criteria already fired."""

        async def get(self, request: Request, model: str) -> Response:
            group = prediction_group(model)

            async def local() -> Response:
                state = pipe.group_state.get(group)
                if not state:
                    return self.json({"error": f"no predictions for model {model!r}"}, status=404)
                return self.json(
                    {
                        "model_version": model,
                        "last_window": state.get("last_window"),
                        "evaluated_end": state.get("evaluated_end"),
                        "baseline": pipe.live.baselines.get(model) or state.get("frozen_baseline"),
                        "outcomes": state.get("outcomes"),
                        "retrain_fired": state.get("fired", []),
                    }
                )

            return await _routed(pipe, pipe.group_state, group, self, request, local)

    @app.page("/models/")
    class Models(View):
        async def get(self, request: Request) -> Response:
            with pipe.live.lock:
                return self.json(
                    {
                        "registry": list(pipe.live.registry.values()),
                        "evaluations": list(pipe.live.evaluations.values()),
                    }
                )

    @app.page("/retrain/")
    class Retrain(View):
        async def get(self, request: Request) -> Response:
            with pipe.live.lock:
                return self.json(
                    {
                        "triggers": list(pipe.live.triggers.values()),
                        "policy": pipe.cfg.retrain.to_dict(),
                    }
                )

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            _health(pipe)
            return self.bytes(
                generate_latest(pipe.metrics.registry), content_type="text/plain; version=0.0.4"
            )
