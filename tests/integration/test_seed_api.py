"""The dispatch seed's REST APIs on a real streams worker: every path answers with its documented
shape (one table over all of them), bad bodies get an error naming the field, and a logged result
is a Prediction event like MLClient's."""

from __future__ import annotations

from typing import Any

from streams.seed_api import AB, MON, SHAPES
from tests.integration.conftest import Broker, wait_for
from tests.integration.kafka_read import read_all
from tests.integration.traffic import simulate_predictions

GETS = [p for p in SHAPES if not p.endswith(("/decide-phase", "/log", "/resolve"))]


def test_every_seed_endpoint_answers_with_its_documented_shape(
    broker: Broker, prefix: str, worker_factory
) -> None:
    worker = worker_factory(window_s=20, hop_s=5, freeze_after=500)
    simulate_predictions(
        broker,
        prefix,
        "--predictions",
        "6000",
        "--experiment",
        "disp-ab",
        "--drift-at",
        "60",
        "--drift",
        "fallback,nulls",
    )

    def ready() -> bool:
        status, body = worker.get(f"{AB}/status")
        alerts = worker.get(f"{MON}/alerts/active")[1] or {}
        return status == 200 and sum(body["samples"].values()) >= 6000 and alerts.get("count")

    wait_for(ready, 120, what=lambda: f"A/B totals and alerts: {worker.get(f'{AB}/status')}")

    answers: dict[str, Any] = {}
    for path in GETS:
        status, body = worker.get(path)
        assert status in (200, 503), (path, status, body)  # 503: an UNHEALTHY health answer
        missing = [k for k in SHAPES[path] if k not in body]
        assert not missing, (path, missing, body)
        answers[path] = body

    assert answers[f"{AB}/status"]["phases"] == {"control": "rules-v1", "treatment": "xgb-v2"}
    comparison = answers[f"{AB}/comparison"]
    assert comparison["phase_1"]["version"] == "rules-v1"
    assert comparison["differences"]["confidence_improvement"] > 0  # the model is more confident
    assert comparison["phase_2"]["fallback_rate"] is not None
    assert answers[f"{AB}/recommendation"]["recommendation"] in (
        "gradual_rollout",
        "continue_testing",
        "collect_more_data",
        "keep_control",
    )
    assert {s["name"] for s in answers[f"{AB}/strategies"]["strategies"]} >= {
        "RANDOM",
        "ROUND_ROBIN",
        "TIME_BASED",
        "WEIGHT_BASED",
    }
    daily = worker.get(f"{AB}/metrics?period=daily")[1]
    assert daily["period"] == "daily" and "treatment" in daily["phases"]
    assert worker.get(f"{AB}/metrics?period=weekly") == (
        400,
        {"error": "period 'weekly': expected hourly or daily"},
    )
    assert answers[f"{MON}/drift/data-quality"]["issues_detected"] is True  # injected nulls
    assert answers[f"{MON}/health/fallback"]["warning"] == 0.05
    assert answers[f"{MON}/alerts/active"]["count"] >= 1
    assert answers[f"{MON}/dashboard"]["ab_testing"]["experiment_id"] == "disp-ab"

    # decide-phase: the experiment's own assigner, sticky by unit; bad bodies name the field.
    status, body = worker.post(f"{AB}/decide-phase", {"unit_id": "dispatch-42"})
    assert status == 200 and set(SHAPES[f"{AB}/decide-phase"]) <= set(body)
    assert body["phase"] in ("control", "treatment") and body["experiment_id"] == "disp-ab"
    assert worker.post(f"{AB}/decide-phase", {"unit": 1})[0] == 400
    assert "unit_id" in worker.post(f"{AB}/decide-phase", {"unit": 1})[1]["error"]
    status, body = worker.post(f"{AB}/decide-phase", {"unit_id": "x", "experiment_id": "nope"})
    assert (status, body) == (404, {"error": "experiment_id 'nope': no such experiment"})

    # log: a Prediction (and Outcome) event with ids from the prediction id.
    result = {
        "prediction_id": "seed-log-1",
        "model_version": "xgb-v2",
        "phase": "treatment",
        "experiment_id": "disp-ab",
        "confidence": 0.93,
        "latency_ms": 11.0,
        "predicted_value": "driver-07",
        "success": True,
    }
    assert worker.post(f"{AB}/log", result, token=None)[0] == 401
    status, body = worker.post(f"{AB}/log", result)
    assert status == 202 and body["logged"] == 2 and set(SHAPES[f"{AB}/log"]) <= set(body)
    status, body = worker.post(f"{AB}/log", {**result, "confidence": "high"})
    assert status == 400 and "confidence" in body["error"]
    status, body = worker.post(f"{AB}/log", {"model_version": "xgb-v2"})
    assert (status, body) == (400, {"error": "prediction_id must be a non-empty text"})
    logged = [
        e.event
        for e in read_all(broker, prefix, ["predictions"])
        if e.event["prediction_id"] == "seed-log-1"
    ]
    assert len(logged) == 1 and logged[0]["confidence"] == 0.93

    # resolve by the seed's alert id: the owner's path, like /alerts/resolve/{key}/.
    alert = answers[f"{MON}/alerts/active"]["alerts"][0]
    status, body = worker.post(f"{MON}/alerts/{alert['alert_id']}/resolve", {})
    assert status == 202 and set(SHAPES[f"{MON}/alerts/{{id}}/resolve"]) <= set(body)
    assert worker.post(f"{MON}/alerts/unknown-id/resolve", {})[0] == 404
    wait_for(
        lambda: (
            alert["dedup_key"]
            not in {a["dedup_key"] for a in worker.get(f"{MON}/alerts/active")[1]["alerts"]}
        ),
        30,
        what="the resolved alert gone from the active list",
    )
