"""The analytics worker on the real broker: drift and alerts from injected drift (and none on
clean traffic), exactly-once totals across SIGKILL, web views, metrics."""

from __future__ import annotations

import pytest

from continuum.demo.chat import DriftInjection, SimulatorConfig
from tests.integration.conftest import Broker, wait_for
from tests.integration.kafka_read import read_all
from tests.integration.traffic import (
    START,
    Feed,
    ab_totals,
    produce,
    simulate_predictions,
    wait_exact,
    wait_part_way,
)

pytestmark = pytest.mark.integration


def test_injected_latency_and_fallback_drift_is_signalled_and_alerted(
    broker: Broker, prefix: str, worker_factory
) -> None:
    worker = worker_factory()
    drift_at_s = 60
    cfg = SimulatorConfig(
        turns=9000,
        rate=100,
        seed=21,
        # On one channel only, strong enough to move the totals as much as a uniform drift would:
        # every breached signal must say where the change is.
        drift=DriftInjection(
            at_s=drift_at_s,
            kinds=("latency", "fallback"),
            channels=("whatsapp",),
            latency_factor=4.0,
            fallback_spike=0.6,
        ),
    )
    produce(broker, prefix, cfg)
    drift_ms = START + drift_at_s * 1000

    def late_breach() -> bool:
        status, body = worker.get("/drift/")
        sigs = body["models"].get("okla-v1.0", []) if status == 200 else []
        return any(
            s["signal"] == "latency_increase"
            and s["breached"]
            and s["window_end"] > drift_ms + 20_000
            for s in sigs
        )

    wait_for(
        late_breach,
        120,
        what=lambda: "a breached latency_increase after the drift:\n" + worker.tail(),
    )
    signals = [e.event for e in read_all(broker, prefix, ["drift-signals"])]
    window = [s for s in signals if s["detector"] == "window"]
    before = [s for s in window if s["window_end"] <= drift_ms]
    after = [s for s in window if s["window_start"] >= drift_ms]
    assert before and after
    assert [
        (s["signal"], s["window_end"], s["value"], s["baseline"]) for s in before if s["breached"]
    ] == []
    breached_after = {s["signal"] for s in after if s["breached"]}
    assert {"latency_increase", "fallback_rate_increase"} <= breached_after
    assert not breached_after & {
        "confidence_drop",
        "intent_distribution_shift",
        "token_usage_change",
    }
    # What changed: the drifted channel is named first, on every breached signal after the drift.
    for s in after:
        if s["breached"] and s["signal"] in ("latency_increase", "fallback_rate_increase"):
            assert s["details"]["why.1"].startswith("channel=whatsapp: +"), (
                s["signal"],
                s["details"],
            )
    # Online detectors: the latency change is flagged within a few hundred events of the change.
    changes = [
        s
        for s in signals
        if s["signal"] == "change_point" and s["details"]["metric"] == "latency_ms"
    ]
    assert changes and all(s["window_end"] >= drift_ms for s in changes)
    assert min(s["window_end"] for s in changes) - drift_ms < 10_000  # < 1000 turns at 100/s
    # Baselines were frozen from the first turns and published on the compacted topic.
    baselines = [e.event for e in read_all(broker, prefix, ["baselines"])]
    assert {b["model_version"] for b in baselines} == {"okla-v1.0", "okla-v2.0"}
    assert all(b["source"] == "frozen" and b["sample_size"] >= 500 for b in baselines)
    # Alerts: the seed's types, on the alerts topic and in the views.
    alerts = [e.event for e in read_all(broker, prefix, ["alerts"])]
    types = {(a["alert_type"], a["model_version"]) for a in alerts if a["status"] == "OPEN"}
    assert ("HIGH_FALLBACK_RATE", "okla-v1.0") in types and ("DRIFT_DETECTED", "okla-v1.0") in types
    view = worker.get("/drift/okla-v1.0/")[1]["signals"]
    latency = next(s for s in view if s["signal"] == "latency_increase" and s["breached"])
    assert {(r["dimension"], r["segment"]) for r in latency["what_changed"]} >= {
        ("channel", "whatsapp"),
        ("channel", "web"),
        ("channel", "app"),
        ("intent", "vehicle_search"),
    }
    drift_alerts = [a for a in alerts if a["dedup_key"] == "drift:okla-v1.0:latency_increase"]
    assert drift_alerts and drift_alerts[0]["details"]["why.1"].startswith("channel=whatsapp")
    # Nothing but the INFO notices of the frozen baselines before the drift.
    early = [a for a in alerts if a["event_time"] < drift_ms]
    assert {(a["severity"], a["dedup_key"]) for a in early} <= {
        ("INFO", "baseline:okla-v1.0"),
        ("INFO", "baseline:okla-v2.0"),
    }
    wait_for(
        lambda: (
            worker.get("/alerts/active/")[1]
            and len(worker.get("/alerts/active/")[1]["alerts"]) >= 2
        ),
        30,
    )
    status, health = worker.get("/health/")
    assert health["status"] in ("DEGRADED", "UNHEALTHY") and any(
        "fallback" in r for r in health["reasons"]
    )
    metrics = worker.get("/metrics")[1]
    assert (
        'continuum_drift_breached{model_version="okla-v1.0",signal="latency_increase"} 1.0'
        in metrics
    )
    assert "continuum_events_processed_total" in metrics


def test_a_new_topic_fires_semantic_drift_and_names_it_while_intent_kl_stays(
    broker: Broker, prefix: str, worker_factory
) -> None:
    """Users start asking about electric cars inside the same intents: the query embeddings move,
    the intent mix does not; the alert names the new topic with example queries."""
    worker = worker_factory()
    drift_at_s = 40
    cfg = SimulatorConfig(
        turns=7000, rate=100, seed=23, drift=DriftInjection(at_s=drift_at_s, kinds=("topic",))
    )
    produce(broker, prefix, cfg)
    drift_ms = START + drift_at_s * 1000

    def breached_after() -> list[dict]:
        status, body = worker.get("/drift/")
        sigs = body["models"].get("okla-v1.0", []) if status == 200 else []
        return [
            s
            for s in sigs
            if s["signal"] == "semantic_drift" and s["breached"] and s["window_start"] >= drift_ms
        ]

    wait_for(
        lambda: bool(breached_after()),
        120,
        what=lambda: "a breached semantic_drift after the new topic:\n" + worker.tail(),
    )
    signals = [e.event for e in read_all(broker, prefix, ["drift-signals"])]
    semantic = [s for s in signals if s["signal"] == "semantic_drift"]
    before = [s for s in semantic if s["window_end"] <= drift_ms]
    after = [s for s in semantic if s["window_start"] >= drift_ms]
    assert before and not any(s["breached"] for s in before)
    assert after and all(s["breached"] for s in after)
    assert all(float(s["details"]["p_value"]) < 0.01 for s in after)
    assert "electric" in after[-1]["details"]["topic.1"]
    kl = [s for s in signals if s["signal"] == "intent_distribution_shift"]
    assert kl and not any(s["breached"] for s in kl)
    alerts = [e.event for e in read_all(broker, prefix, ["alerts"])]
    raised = [
        a
        for a in alerts
        if a["dedup_key"] == "drift:okla-v1.0:semantic_drift" and a["status"] == "OPEN"
    ]
    assert raised and raised[0]["alert_type"] == "DRIFT_DETECTED"
    assert "electric" in raised[0]["details"]["why.1"] and "«" in raised[0]["details"]["why.1"]
    # The dashboard's picture: both samples in 2-D, the new topic's queries marked.
    status, pic = worker.get("/drift/okla-v1.0/semantic/")
    assert status == 200 and pic["breached"] and len(pic["baseline"]) >= 50
    marked = [p for p in pic["window"] if p[2] == 1]
    assert marked and "electric" in pic["topics"][0]["label"]
    assert worker.get("/drift/nope/semantic/")[0] == 404
    print(raised[0]["details"]["why.1"])


def test_sigkill_mid_stream_loses_and_doubles_nothing(
    broker: Broker, prefix: str, worker_factory
) -> None:
    """Traffic keeps flowing while the worker is SIGKILLed and restarted; the totals still equal
    what was produced (no loss, no double count)."""
    worker = worker_factory()
    with Feed(broker.bootstrap, prefix, SimulatorConfig(turns=30_000, rate=1000, seed=5)) as feed:
        wait_part_way(worker, 2000, 60)
        worker.kill()
        assert feed.alive(), "traffic ended before the kill: nothing was tested"
        worker = worker_factory()
        expected = feed.finish()
    wait_exact(worker, expected, 180)


def test_views_experiments_and_auth(broker: Broker, prefix: str, worker_factory) -> None:
    worker = worker_factory()
    exp = {
        "experiment_id": "v3-test",
        "name": "v3",
        "control_version": "okla-v1.0",
        "treatment_version": "okla-v3.0",
        "traffic_split": 10.0,
    }
    assert worker.post("/ab/", exp, token=None)[0] == 401
    assert worker.post("/ab/", exp, token="wrong")[0] == 401
    status, body = worker.post("/ab/", {**exp, "traffic_split": 500}, token="test-token")
    assert status == 400 and "traffic_split" in body["error"], (status, body, worker.tail())
    status, body = worker.post("/ab/", exp)
    assert status == 201 and body["created"]["status"] == "RUNNING"
    wait_for(
        lambda: any(e["experiment_id"] == "v3-test" for e in worker.get("/ab/")[1]["experiments"]),
        30,
    )
    status, body = worker.post("/ab/v3-test/stop/", {})
    assert status == 200 and body["stopped"]["status"] == "STOPPED"
    assert worker.get("/ab/nope/")[0] == 404
    assert worker.get("/drift/nope/")[0] == 404


def test_two_workers_give_the_same_totals_as_one(
    broker: Broker, prefix: str, worker_factory
) -> None:
    a = worker_factory()
    b = worker_factory()
    # Both stage-1 consumers hold input partitions before any traffic (else one worker could
    # fold everything before the other joins, and the totals would prove nothing).
    wait_for(
        lambda: all(w.get("/health/")[1]["partitions"] for w in (a, b)),
        60,
        what=lambda: f"both workers assigned: {[w.get('/health/')[1] for w in (a, b)]}",
    )
    expected = produce(broker, prefix, SimulatorConfig(turns=12_000, rate=200, seed=8))
    # Both workers answer for the experiment: one from its table, the other by routing to it.
    wait_for(
        lambda: ab_totals(a) == expected,
        180,
        what=lambda: f"worker A totals {expected}, last {ab_totals(a)}:\n{a.tail()}",
    )
    wait_for(
        lambda: ab_totals(b) == expected,
        60,
        what=lambda: f"worker B totals {expected}, last {ab_totals(b)}:\n{b.tail()}",
    )
    assert a.get("/ab/v1-vs-v2/")[1]["evaluated_at"] == b.get("/ab/v1-vs-v2/")[1]["evaluated_at"]
    # ... and the work really was split between them.
    import re

    for w in (a, b):
        m = re.search(
            r'continuum_events_processed_total\{type="ChatTurn"\} (\d+)', w.get("/metrics")[1]
        )
        assert m and int(m.group(1)) > 0, w.get("/metrics")[1][:2000]


def test_experiments_cli_reaches_the_worker(broker: Broker, prefix: str, worker_factory) -> None:
    import subprocess
    import sys

    worker = worker_factory()
    args = ["--bootstrap-servers", broker.bootstrap, "--topic-prefix", prefix]
    cli = [sys.executable, "-m", "continuum.cli", "experiments"]
    bad = subprocess.run(
        [*cli, "create", "cli-exp", "--control", "okla-v1.0", *args], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "needs --treatment" in bad.stderr
    subprocess.run(
        [
            *cli,
            "create",
            "cli-exp",
            "--control",
            "okla-v1.0",
            "--treatment",
            "okla-v2.0",
            "--split",
            "20",
            *args,
        ],
        check=True,
        capture_output=True,
    )

    def listed(status: str) -> bool:
        exps = {e["experiment_id"]: e for e in worker.get("/ab/")[1]["experiments"]}
        return exps.get("cli-exp", {}).get("status") == status

    wait_for(lambda: listed("RUNNING"), 30)
    subprocess.run(
        [*cli, "stop", "cli-exp", "--control", "okla-v1.0", "--treatment", "okla-v2.0", *args],
        check=True,
        capture_output=True,
    )
    wait_for(lambda: listed("STOPPED"), 30)


def test_a_predictive_model_is_monitored_from_its_predictions_and_outcomes(
    broker: Broker, prefix: str, worker_factory
) -> None:
    """`continuum simulate-predictions` sends a dispatch model's predictions and outcomes
    (65 % successful, confidence dropping and a feature going missing after 60 s): the worker
    freezes the model's baseline, signals the drift only after it, and fires LOW_ACCURACY from
    the outcomes; /predictions/{model}/ shows the counts."""
    worker = worker_factory()
    sent = simulate_predictions(
        broker,
        prefix,
        "--predictions",
        "9000",
        "--rate",
        "100",
        "--accuracy",
        "0.65",
        "--drift-at",
        "60",
        "--drift",
        "confidence,nulls",
    )
    outcomes = int(sent.split(" and ")[1].split()[0])
    assert sent.startswith("sent 9000 predictions") and outcomes > 6000
    drift_ms = START + 60_000

    def late_breach() -> bool:
        status, body = worker.get("/drift/")
        sigs = body["models"].get("xgb-v2", []) if status == 200 else []
        return any(
            s["signal"] == "confidence_drop" and s["breached"] and s["window_start"] >= drift_ms
            for s in sigs
        )

    wait_for(late_breach, 120, what=lambda: "a breached confidence_drop:\n" + worker.tail())

    def counted() -> bool:
        status, body = worker.get("/predictions/xgb-v2/")
        return status == 200 and (body["outcomes"] or {}).get("outcomes") == outcomes

    wait_for(counted, 60, what=lambda: f"{outcomes} outcomes:\n" + worker.tail())
    body = worker.get("/predictions/xgb-v2/")[1]
    assert 0.6 < body["outcomes"]["accuracy"] < 0.7
    assert body["retrain_fired"] == ["xgb-v2:LOW_ACCURACY"]
    assert body["baseline"]["source"] == "frozen" and body["baseline"]["tokens_mean"] is None
    signals = [e.event for e in read_all(broker, prefix, ["drift-signals"])]
    window = [s for s in signals if s["detector"] == "window" and s["model_version"] == "xgb-v2"]
    assert not [s["signal"] for s in window if s["breached"] and s["window_end"] <= drift_ms]
    after = {s["signal"] for s in window if s["breached"] and s["window_start"] >= drift_ms}
    assert {"confidence_drop", "data_quality_null_rate"} <= after
    triggers = [e.event for e in read_all(broker, prefix, ["retrain-triggers"])]
    assert [(t["model_version"], t["reason"]) for t in triggers] == [("xgb-v2", "LOW_ACCURACY")]
    metrics = worker.get("/metrics")[1]
    assert 'continuum_events_processed_total{type="Prediction"} 9000.0' in metrics


def test_a_predictive_models_ab_test_reaches_the_ab_view(
    broker: Broker, prefix: str, worker_factory
) -> None:
    """`continuum simulate-predictions --experiment`: rules-v1 against xgb-v2, analysed from
    predictions and outcomes on the real broker, shown by /ab/{experiment}/."""
    worker = worker_factory()
    sent = simulate_predictions(broker, prefix, "--predictions", "3000", "--experiment", "disp-ab")
    assert sent.startswith("sent 3000 predictions")

    def analysed() -> dict | None:
        status, body = worker.get("/ab/disp-ab/")
        if status != 200 or body["control"]["turns"] + body["treatment"]["turns"] < 3000:
            return None
        return body

    wait_for(analysed, 60, what=lambda: "the A/B analysis:\n" + worker.tail())
    body = analysed()
    assert body is not None
    assert body["experiment"]["control_version"] == "rules-v1"
    assert body["control"]["feedback"] > 1000 and body["treatment"]["feedback"] > 1000
    assert body["decision"] == "treatment"
    assert body["recommendation"]["recommendation"] in ("gradual_rollout", "continue_testing")
