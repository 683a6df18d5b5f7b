"""The dispatch seed's REST APIs on the streams workers, so a client written for the seed keeps
working: ``/api/v3/ab-testing/*`` (status, dashboard, comparison, decide-phase, log,
recommendation, metrics, strategies) and ``/api/v4/monitoring/*`` (health, drift, alerts,
dashboard). Every answer is read from the same tables and live views as Continuum's own paths
(``/ab/``, ``/alerts/``, ``/health/``, ``/drift/``); writes take the same paths too (a logged
result is a ``Prediction`` event, a resolve is a request to the alert owner).

The seed runs one A/B test at a time: the A/B endpoints answer for ``?experiment=<id>`` or, by
default, the newest RUNNING experiment. ``SHAPES`` lists the keys every answer has (the
documented shape, checked by the integration test).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from faust.web import Request, Response, View

from producers.assignment import STRATEGIES, VariantRouter
from producers.mlclient import outcome_event, prediction_event
from producers.producer import epoch_ms, prepare_event
from schemas.errors import EventValidationError
from streams.agents.alerts import send_request
from streams.logic.abtest import recommendation_band
from streams.logic.alerts import SEVERITIES, resolve_request
from streams.logic.partials import experiment_group
from streams.pipeline import Pipeline

AB = "/api/v3/ab-testing"
MON = "/api/v4/monitoring"

# The keys of every answer (a client written for the seed reads these).
SHAPES: dict[str, tuple[str, ...]] = {
    f"{AB}/status": ("experiment_id", "status", "strategy", "traffic_split", "phases", "samples"),
    f"{AB}/dashboard": ("status", "comparison", "recommendation", "rollout", "strategies"),
    f"{AB}/comparison": ("experiment_id", "phase_1", "phase_2", "differences", "tests", "srm"),
    f"{AB}/decide-phase": ("experiment_id", "phase", "model_version", "strategy", "unit_id"),
    f"{AB}/log": ("logged", "prediction_id", "event_ids"),
    f"{AB}/recommendation": ("experiment_id", "recommendation", "confidence_improvement", "bands"),
    f"{AB}/metrics": ("experiment_id", "period", "phases"),
    f"{AB}/strategies": ("strategies", "current"),
    f"{MON}/health": ("status", "reasons", "components", "checked_at"),
    f"{MON}/health/database": ("status", "kafka", "state_stores", "consumer_lag"),
    f"{MON}/health/model": ("status", "models"),
    f"{MON}/health/predictions": ("status", "models", "min_confidence"),
    f"{MON}/health/fallback": ("status", "models", "warning", "critical"),
    f"{MON}/drift/prediction": ("drift_detected", "signals"),
    f"{MON}/drift/performance": ("degradation_detected", "signals"),
    f"{MON}/drift/data-quality": ("issues_detected", "signals"),
    f"{MON}/alerts/active": ("count", "alerts"),
    f"{MON}/alerts/history": ("count", "alerts"),
    f"{MON}/alerts/statistics": ("open", "open_by_severity", "raised", "severities"),
    f"{MON}/alerts/{{id}}/resolve": ("resolving", "request"),
    f"{MON}/dashboard": ("health", "drift", "alerts", "ab_testing"),
}

STRATEGY_DOCS = {
    "RANDOM": "each call drawn at random with the treatment's share (the seed's RANDOM_50_50)",
    "ROUND_ROBIN": "calls alternate so the share is exact over every cycle",
    "TIME_BASED": "a smaller share in peak hours (Santo Domingo time), the split off-peak",
    "WEIGHT_BASED": "gradual rollout: the share follows metadata.rollout_schedule, advancing "
    "while the treatment is healthy and stopping on a CRITICAL alert",
    "STICKY": "a unit (session, customer) keeps its arm: hashed on the unit id",
}
PREDICTION_SIGNALS = (
    "confidence_drop",
    "confidence_variance_change",
    "confidence_vs_training",
    "intent_distribution_shift",
)
PERFORMANCE_SIGNALS = ("performance_degradation",)
QUALITY_SIGNALS = ("data_quality_null_rate", "data_quality_outliers")
# Per-period A/B metrics come from the arms' window signals: signal -> metric.
PERIOD_METRICS = {
    "confidence_drop": "confidence_mean",
    "latency_increase": "latency_p95_ms",
    "fallback_rate_increase": "fallback_rate",
}
PERIODS = {"hourly": 3_600_000, "daily": 86_400_000}


def _error(view: View, status: int, message: str) -> Response:
    return view.json({"error": message}, status=status)


class SeedApi:
    """The answers, from the pipeline's tables and live views."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.router = VariantRouter()
        self._router_seen: dict[str, Any] = {}

    # -- A/B -----------------------------------------------------------------------------------

    def experiment(self, request: Request) -> dict[str, Any] | None:
        """``?experiment=`` or the newest RUNNING one."""
        wanted = request.query.get("experiment")
        with self.pipe.live.lock:
            exps = dict(self.pipe.live.experiments)
        if wanted:
            return exps.get(wanted)
        running = [e for e in exps.values() if e.get("status") == "RUNNING"]
        return max(running, key=lambda e: epoch_ms(e.get("event_time")), default=None)

    def ab_result(self, exp_id: str) -> dict[str, Any] | None:
        return self.pipe.ab_results.get(experiment_group(exp_id))

    def status(self, exp: Mapping[str, Any], result: Mapping[str, Any] | None) -> dict[str, Any]:
        samples = {
            arm: (result or {}).get(arm, {}).get("turns", 0) for arm in ("control", "treatment")
        }
        return {
            "experiment_id": exp["experiment_id"],
            "name": exp.get("name"),
            "status": exp.get("status"),
            "strategy": exp.get("strategy"),
            "traffic_split": exp.get("traffic_split"),
            "phases": {"control": exp["control_version"], "treatment": exp["treatment_version"]},
            "samples": samples,
            "min_samples": exp.get("min_samples"),
            "decision": (result or {}).get("decision"),
            "evaluated_at": (result or {}).get("evaluated_at"),
        }

    def comparison(self, exp: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
        c, t = result["control"], result["treatment"]

        def diff(key: str, relative: bool = False) -> float | None:
            a, b = c.get(key), t.get(key)
            if a is None or b is None:
                return None
            if relative:
                return (b - a) / a if a else None
            return float(b - a)

        return {
            "experiment_id": exp["experiment_id"],
            "phase_1": {"version": exp["control_version"], **c},
            "phase_2": {"version": exp["treatment_version"], **t},
            "differences": {
                "confidence_improvement": diff("confidence_mean", relative=True),
                "response_time_ms": diff("latency_mean_ms"),
                "fallback_rate": diff("fallback_rate"),
                "success_rate": diff("satisfaction_rate"),
            },
            "tests": result.get("tests", []),
            "srm": result.get("srm"),
            "decision": result.get("decision"),
        }

    def recommendation(self, exp: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
        band = result.get("recommendation") or recommendation_band(None, None)
        return {
            "experiment_id": exp["experiment_id"],
            "recommendation": band["recommendation"],
            "confidence_improvement": band["improvement"],
            "decision": result.get("decision"),
            "bands": {
                "gradual_rollout": "> 10 %",
                "continue_testing": "5-10 %",
                "collect_more_data": "0-5 %",
                "keep_control": "< 0 %",
            },
        }

    def metrics(self, exp: Mapping[str, Any], period: str) -> dict[str, Any]:
        """Per period, each arm's mean of the window values that ended in it (from the drift
        signals of the arm's model version)."""
        size = PERIODS[period]
        with self.pipe.live.lock:
            rows = list(self.pipe.live.signal_history)
        phases: dict[str, dict[str, dict[str, Any]]] = {}
        for arm, version in (
            ("control", exp["control_version"]),
            ("treatment", exp["treatment_version"]),
        ):
            sums: dict[int, dict[str, list[float]]] = {}
            for r in rows:
                metric = PERIOD_METRICS.get(r["signal"])
                if metric is None or r["model_version"] != version or r.get("detector") != "window":
                    continue
                start = epoch_ms(r["event_time"]) // size * size
                sums.setdefault(start, {}).setdefault(metric, []).append(float(r["value"]))
            phases[arm] = {
                str(start): {
                    "version": version,
                    **{m: sum(v) / len(v) for m, v in metrics.items()},
                    "windows": max(len(v) for v in metrics.values()),
                }
                for start, metrics in sorted(sums.items())
            }
        return {"experiment_id": exp["experiment_id"], "period": period, "phases": phases}

    def decide(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, Mapping):
            return 400, {"error": "body must be a JSON object with unit_id"}
        unit = body.get("unit_id") or body.get("dispatch_id") or body.get("session_id")
        if not isinstance(unit, str) or not unit:
            return 400, {"error": "unit_id (or dispatch_id / session_id) must be a non-empty text"}
        with self.pipe.live.lock:
            exps = dict(self.pipe.live.experiments)
        for exp_id, ev in exps.items():
            if self._router_seen.get(exp_id) != ev.get("event_id"):
                self._router_seen[exp_id] = ev.get("event_id")
                try:
                    self.router.update(ev)
                except ValueError:  # bad metadata: its last good version keeps routing
                    continue
        wanted = body.get("experiment_id")
        if wanted is not None:
            exp = exps.get(str(wanted))
            if exp is None:
                return 404, {"error": f"experiment_id {wanted!r}: no such experiment"}
        else:
            exp = self.router.running()
        if exp is None or exp.get("status") != "RUNNING":
            version = body.get("default_version")
            return 200, {
                "experiment_id": exp["experiment_id"] if exp else None,
                "phase": "control",
                "model_version": exp["control_version"] if exp else version,
                "strategy": None,
                "unit_id": unit,
                "reason": "no running experiment: the control serves",
            }
        arm = self.router.arm(exp["experiment_id"], unit, int(time.time() * 1000))
        return 200, {
            "experiment_id": exp["experiment_id"],
            "phase": arm,
            "model_version": exp["control_version"]
            if arm == "control"
            else exp["treatment_version"],
            "strategy": exp.get("strategy"),
            "traffic_split": exp.get("traffic_split"),
            "unit_id": unit,
        }

    async def log(self, body: Any) -> tuple[int, dict[str, Any]]:
        """A result logged the seed's way: a ``Prediction`` (and its ``Outcome`` when ``success``
        or ``actual_value`` is given), ids from the prediction id, the same events MLClient logs."""
        if not isinstance(body, Mapping):
            return 400, {"error": "body must be a JSON object (a prediction result)"}
        for name in ("prediction_id", "model_version"):
            if not isinstance(body.get(name), str) or not body[name]:
                return 400, {"error": f"{name} must be a non-empty text"}
        pid, version = body["prediction_id"], body["model_version"]
        events = [
            (
                "Prediction",
                prediction_event(
                    pid,
                    version,
                    model_name=body.get("model_name", "dispatch"),
                    phase=body.get("phase"),
                    experiment_id=body.get("experiment_id"),
                    entity_id=body.get("entity_id"),
                    features=body.get("features"),
                    predicted_value=body.get("predicted_value"),
                    confidence=body.get("confidence"),
                    fallback_used=bool(body.get("fallback_used", False)),
                    fallback_reason=body.get("fallback_reason"),
                    latency_ms=body.get("latency_ms"),
                    metadata=body.get("metadata"),
                    event_time=body.get("event_time"),
                ),
            )
        ]
        if body.get("success") is not None or body.get("actual_value") is not None:
            events.append(
                (
                    "Outcome",
                    outcome_event(
                        pid,
                        version,
                        experiment_id=body.get("experiment_id"),
                        variant=body.get("phase"),
                        actual_value=body.get("actual_value"),
                        success=body.get("success"),
                    ),
                )
            )
        try:
            for schema, ev in events:  # validated before anything is sent
                self.pipe.outputs.serializer.encode(schema, prepare_event(ev))
        except (EventValidationError, ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}
        ids = []
        for schema, ev in events:
            sent = await self.pipe.outputs.send(schema, ev)
            ids.append(sent["event_id"])
        return 202, {"logged": len(events), "prediction_id": pid, "event_ids": ids}

    # -- monitoring ----------------------------------------------------------------------------

    def latest_signals(self, names: tuple[str, ...], prefix: str | None = None) -> list[Any]:
        with self.pipe.live.lock:
            sigs = list(self.pipe.live.signals.values())
        return [
            s
            for s in sigs
            if s["signal"] in names or (prefix is not None and s["signal"].startswith(prefix))
        ]

    def models_health(
        self, signal: str, warning: float, critical: float, up: bool
    ) -> dict[str, Any]:
        """Per model: the newest window's value of ``signal`` against warning/critical limits
        (``up``: higher is worse)."""
        out = {}
        for s in self.latest_signals((signal,)):
            if s.get("detector") != "window" or s.get("variant"):
                continue
            v = float(s["value"])
            if up:
                crit, warn = v >= critical, v >= warning
            else:
                crit, warn = v < critical, v < warning
            status = "UNHEALTHY" if crit else "DEGRADED" if warn else "HEALTHY"
            out[s["model_version"]] = {
                "status": status,
                "value": v,
                "sample_size": s["sample_size"],
                "window_end": s["window_end"],
            }
        return out


def _overall(statuses: list[str]) -> str:
    for s in ("UNHEALTHY", "DEGRADED"):
        if s in statuses:
            return s
    return "HEALTHY"


def register(pipe: Pipeline) -> None:
    """Add the seed's routes to the worker's web server."""
    from streams.views import _authorized, _health, _routed

    app = pipe.app
    api = SeedApi(pipe)

    async def ab_view(view: View, request: Request, answer: Any) -> Response:
        exp = api.experiment(request)
        if exp is None:
            wanted = request.query.get("experiment")
            msg = f"no experiment {wanted!r}" if wanted else "no running experiment"
            return _error(view, 404, msg)
        group = experiment_group(exp["experiment_id"])

        async def local() -> Response:
            result = api.ab_result(exp["experiment_id"])
            if result is None and answer != api.status:
                return _error(view, 404, f"no A/B data yet for {exp['experiment_id']!r}")
            out = answer(exp, result)
            return view.json(out)

        return await _routed(pipe, pipe.ab_results, group, view, request, local)

    for name, fn in (
        ("status", api.status),
        ("comparison", api.comparison),
        ("recommendation", api.recommendation),
    ):

        class AbAnswer(View):
            answer = staticmethod(fn)

            async def get(self, request: Request) -> Response:
                return await ab_view(self, request, self.answer)

        app.page(f"{AB}/{name}", name=f"seed-ab-{name}")(AbAnswer)

    @app.page(f"{AB}/dashboard")
    class AbDashboard(View):
        async def get(self, request: Request) -> Response:
            def dashboard(exp: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
                return {
                    "status": api.status(exp, result),
                    "comparison": api.comparison(exp, result),
                    "recommendation": api.recommendation(exp, result),
                    "rollout": result.get("rollout"),
                    "strategies": list(STRATEGIES),
                }

            return await ab_view(self, request, dashboard)

    @app.page(f"{AB}/metrics")
    class AbMetrics(View):
        async def get(self, request: Request) -> Response:
            period = request.query.get("period", "hourly")
            if period not in PERIODS:
                return _error(self, 400, f"period {period!r}: expected hourly or daily")
            exp = api.experiment(request)
            if exp is None:
                return _error(self, 404, "no running experiment")
            return self.json(api.metrics(exp, period))

    @app.page(f"{AB}/strategies")
    class AbStrategies(View):
        async def get(self, request: Request) -> Response:
            exp = api.experiment(request)
            return self.json(
                {
                    "strategies": [
                        {"name": s, "description": STRATEGY_DOCS[s]} for s in STRATEGIES
                    ],
                    "current": exp.get("strategy") if exp else None,
                }
            )

    @app.page(f"{AB}/decide-phase")
    class AbDecide(View):
        async def post(self, request: Request) -> Response:
            try:
                body = json.loads(await request.text())
            except ValueError as exc:
                return _error(self, 400, f"body is not JSON: {exc}")
            status, out = api.decide(body)
            return self.json(out, status=status)

    @app.page(f"{AB}/log")
    class AbLog(View):
        async def post(self, request: Request) -> Response:
            if not _authorized(pipe, request):
                return _error(self, 401, "missing or wrong bearer token")
            try:
                body = json.loads(await request.text())
            except ValueError as exc:
                return _error(self, 400, f"body is not JSON: {exc}")
            status, out = await api.log(body)
            return self.json(out, status=status)

    # -- monitoring ----------------------------------------------------------------------------

    def database() -> dict[str, Any]:
        down = pipe.kafka_down_since
        lag = sum(pipe.lag.values()) if pipe.lag else None
        tables = {
            t.name: len(t)
            for t in (pipe.group_state, pipe.ab_results)
            if hasattr(t, "name") and hasattr(t, "__len__")
        }
        return {
            "status": "UNHEALTHY" if down is not None else "HEALTHY",
            "kafka": {"reachable": down is None, "down_since": down},
            "state_stores": {"tables": tables, "where": "RocksDB/memory, changelogs on Kafka"},
            "consumer_lag": lag,
        }

    def model_health() -> dict[str, Any]:
        now = int(time.time() * 1000)
        with pipe.live.lock:
            registry = {m: dict(ev) for m, ev in pipe.live.registry.items()}
            served = {s["model_version"] for s in pipe.live.signals.values()}
        models = {}
        for version in sorted(set(registry) | served):
            reg = registry.get(version) or {}
            trained = reg.get("trained_at")
            models[version] = {
                "state": reg.get("state", "UNREGISTERED"),
                "trained_at": trained,
                "age_days": round((now - epoch_ms(trained)) / 86_400_000, 2) if trained else None,
                "files": reg.get("artifact_uri"),
                "has_training_metrics": bool(reg.get("training_metrics")),
                "seen_in_traffic": version in served,
            }
        limit = pipe.cfg.retrain.max_age_days  # older than the retrain age: due for retraining
        statuses = [
            "DEGRADED" if m["age_days"] is not None and m["age_days"] >= limit else "HEALTHY"
            for m in models.values()
        ]
        return {"status": _overall(statuses), "models": models, "max_age_days": limit}

    def predictions_health() -> dict[str, Any]:
        t = pipe.cfg.alerts
        models = api.models_health(
            "confidence_drop", t.min_confidence, t.min_confidence * 0.9, False
        )
        return {
            "status": _overall([m["status"] for m in models.values()]),
            "models": models,
            "min_confidence": t.min_confidence,
        }

    def fallback_health() -> dict[str, Any]:
        t = pipe.cfg.alerts
        models = api.models_health(
            "fallback_rate_increase", t.fallback_warning, t.fallback_critical, True
        )
        return {
            "status": _overall([m["status"] for m in models.values()]),
            "models": models,
            "warning": t.fallback_warning,
            "critical": t.fallback_critical,
        }

    def health() -> dict[str, Any]:
        report = _health(pipe)
        parts = {
            "database": database(),
            "model": model_health(),
            "predictions": predictions_health(),
            "fallback": fallback_health(),
        }
        status = _overall([report["status"], *(p["status"] for p in parts.values())])
        return {
            "status": status,
            "reasons": report["reasons"],
            "components": {k: {"status": v["status"]} for k, v in parts.items()},
            "checks": report["checks"],
            "checked_at": report["checked_at"],
        }

    def drift(
        names: tuple[str, ...], flag: str, prefix: str | None = None
    ) -> Callable[[Request], dict[str, Any]]:
        def build(request: Request) -> dict[str, Any]:
            sigs = api.latest_signals(names, prefix)
            if m := request.query.get("model"):
                sigs = [s for s in sigs if s["model_version"] == m]
            return {flag: any(s["breached"] for s in sigs), "signals": sigs}

        return build

    drift_views = {
        "prediction": drift(PREDICTION_SIGNALS, "drift_detected"),
        "performance": drift(PERFORMANCE_SIGNALS, "degradation_detected"),
        "data-quality": drift(QUALITY_SIGNALS, "issues_detected", prefix="feature_drift:"),
    }

    def alerts_stats() -> dict[str, Any]:
        with pipe.live.lock:
            by_sev: dict[str, int] = {}
            for a in pipe.live.alerts_open.values():
                by_sev[a["severity"]] = by_sev.get(a["severity"], 0) + 1
            return {
                "open": len(pipe.live.alerts_open),
                "open_by_severity": by_sev,
                "raised": dict(pipe.live.alert_counts),
                "severities": list(SEVERITIES),
            }

    for name, fn in (
        ("health/database", database),
        ("health/model", model_health),
        ("health/predictions", predictions_health),
        ("health/fallback", fallback_health),
        ("alerts/statistics", alerts_stats),
    ):

        class Simple(View):
            answer = staticmethod(fn)

            async def get(self, request: Request) -> Response:
                return self.json(self.answer())

        app.page(f"{MON}/{name}", name=f"seed-{name}")(Simple)

    for kind, build in drift_views.items():

        class DriftKind(View):
            answer = staticmethod(build)

            async def get(self, request: Request) -> Response:
                return self.json(self.answer(request))

        app.page(f"{MON}/drift/{kind}", name=f"seed-drift-{kind}")(DriftKind)

    @app.page(f"{MON}/health")
    class MonHealth(View):
        async def get(self, request: Request) -> Response:
            out = health()
            return self.json(out, status=503 if out["status"] == "UNHEALTHY" else 200)

    @app.page(f"{MON}/alerts/active")
    class MonActive(View):
        async def get(self, request: Request) -> Response:
            with pipe.live.lock:
                alerts = list(pipe.live.alerts_open.values())
            return self.json({"count": len(alerts), "alerts": alerts})

    @app.page(f"{MON}/alerts/history")
    class MonHistory(View):
        async def get(self, request: Request) -> Response:
            limit = int(request.query.get("limit", 500))
            with pipe.live.lock:
                alerts = list(pipe.live.alert_history)[-limit:]
            return self.json({"count": len(alerts), "alerts": alerts})

    @app.page(MON + "/alerts/{alert_id}/resolve")
    class MonResolve(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            if not _authorized(pipe, request):
                return _error(self, 401, "missing or wrong bearer token")
            with pipe.live.lock:
                match = [
                    a
                    for a in pipe.live.alerts_open.values()
                    if alert_id in (a["alert_id"], a["dedup_key"])
                ]
            if not match:
                return _error(self, 404, f"no open alert with id or key {alert_id!r}")
            req = resolve_request(
                match[0]["dedup_key"],
                int(time.time() * 1000),
                "resolved by an operator",
                source="api",
            )
            sent = await send_request(pipe, req)
            return self.json({"resolving": match[0]["alert_id"], "request": sent}, status=202)

    @app.page(f"{MON}/dashboard")
    class MonDashboard(View):
        async def get(self, request: Request) -> Response:
            exp = api.experiment(request)
            return self.json(
                {
                    "health": health(),
                    "drift": {k: b(request) for k, b in drift_views.items()},
                    "alerts": alerts_stats(),
                    "ab_testing": api.status(exp, None) if exp else None,
                }
            )
