from __future__ import annotations

import pytest

from schemas import AvroSerializer
from streams.logic.alerts import AlertManager, AlertThresholds
from streams.logic.drift import FALLBACK_RATE_INCREASE, LATENCY_INCREASE, SignalResult
from streams.logic.feedback import FeedbackTally
from streams.logic.health import DEGRADED, HEALTHY, UNHEALTHY, check_health
from streams.logic.retrain import DAY_MS, due_triggers, online_accuracy

T = 1_767_225_600_000


def _lat(breached: bool, change: float = 0.8) -> SignalResult:
    return SignalResult(LATENCY_INCREASE, 3000.0, 1800.0, change, 0.5, breached)


def test_alert_dedup_cooldown_escalation_and_resolution() -> None:
    m = AlertManager(AlertThresholds(cooldown_s=600))
    first = m.on_drift("okla-v1.0", [_lat(True)], T)
    assert (
        len(first) == 1
        and first[0]["status"] == "OPEN"
        and first[0]["alert_type"] == "DRIFT_DETECTED"
    )
    assert first[0]["severity"] == "MEDIUM"
    AvroSerializer().encode("Alert", first[0])  # a valid Alert event
    assert m.on_drift("okla-v1.0", [_lat(True)], T + 60_000) == []  # same key inside cool-down
    escalated = m.on_drift("okla-v1.0", [_lat(True, change=1.5)], T + 120_000)
    assert escalated[0]["severity"] == "HIGH" and escalated[0]["alert_id"] == first[0]["alert_id"]
    again = m.on_drift("okla-v1.0", [_lat(True, change=1.5)], T + 120_000 + 601_000)
    assert len(again) == 1  # cool-down over: reminded
    resolved = m.on_drift("okla-v1.0", [_lat(False)], T + 900_000)
    assert resolved[0]["status"] == "RESOLVED" and resolved[0]["alert_id"] == first[0]["alert_id"]
    AvroSerializer().encode("Alert", resolved[0])
    s = m.stats()
    assert (s["open"], s["suppressed"], s["resolved"]) == (0, 1, 1)
    assert s["raised_by_type"] == {"DRIFT_DETECTED": 3}
    assert [h["status"] for h in m.history] == ["OPEN", "OPEN", "OPEN", "RESOLVED"]
    assert AlertManager.from_dict(m.to_dict()).stats() == s


@pytest.mark.parametrize(("rate", "severity"), [(0.06, "HIGH"), (0.12, "CRITICAL")])
def test_fallback_alert_uses_warning_and_critical_levels(rate: float, severity: str) -> None:
    r = SignalResult(FALLBACK_RATE_INCREASE, rate, 0.0, rate * 100, 5.0, True)
    ev = AlertManager().on_drift("m", [r], T)[0]
    assert (ev["alert_type"], ev["severity"]) == ("HIGH_FALLBACK_RATE", severity)
    assert ev["recommendation"]


def test_unknown_alert_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown alert type 'DISK_FULL'"):
        AlertManager().raise_alert("DISK_FULL", "HIGH", "k", "t", T)


def test_health_levels_and_reasons() -> None:
    ok = check_health(
        now_ms=T,
        fallback_rate=0.02,
        low_confidence_rate=0.1,
        heartbeats={"w1": T - 1000},
        consumer_lag=10,
    )
    assert ok["status"] == HEALTHY and ok["reasons"] == []
    deg = check_health(
        now_ms=T,
        fallback_rate=0.06,
        low_confidence_rate=0.1,
        heartbeats={"w1": T - 1000, "w2": T - 60_000},
        consumer_lag=10,
    )
    assert deg["status"] == DEGRADED
    assert deg["reasons"] == [
        "fallback: fallback rate 6.0% >= 5%",
        "inference_workers: 1 worker(s) silent: w2",
    ]
    bad = check_health(
        now_ms=T,
        fallback_rate=0.02,
        low_confidence_rate=0.1,
        heartbeats={"w1": T - 31_000},
        consumer_lag=None,
    )
    assert bad["status"] == UNHEALTHY
    retired = check_health(
        now_ms=T,
        fallback_rate=0.02,
        low_confidence_rate=0.1,
        heartbeats={"w1": T - 1000, "old": T - 2 * 3600_000},
        consumer_lag=None,
    )
    assert retired["status"] == HEALTHY  # silent for hours: retired, not down


def test_service_down_alert_from_heartbeats() -> None:
    m = AlertManager(AlertThresholds(service_timeout_s=30, cooldown_s=600))
    assert m.on_workers({"w1": T - 5_000, "w2": T - 1_000}, T) == []
    [some] = m.on_workers({"w1": T - 5_000, "w2": T - 45_000}, T)
    assert (some["alert_type"], some["severity"], some["status"]) == (
        "SERVICE_DOWN",
        "HIGH",
        "OPEN",
    )
    assert "w2 silent 45s" in some["message"] and some["signals"][0]["current"] == 45.0
    assert m.on_workers({"w1": T - 5_000, "w2": T - 46_000}, T + 1_000) == []  # cooling down
    [worse] = m.on_workers({"w1": T - 40_000, "w2": T - 46_000}, T + 2_000)
    assert worse["severity"] == "CRITICAL" and worse["title"] == "No inference worker is answering"
    [back] = m.on_workers({"w1": T + 3_000, "w2": T + 3_000}, T + 3_000)
    assert back["status"] == "RESOLVED"
    assert m.on_workers({"gone": T - 5 * 3600_000}, T) == []  # retired long ago: no alert


def test_feedback_tally() -> None:
    t = FeedbackTally()
    for fb in [
        {"rating": 5, "category": "good_response", "event_time": T},
        {
            "rating": 1,
            "category": "wrong_intent",
            "thumbs": "DOWN",
            "intent": "financing",
            "correction": "x",
            "event_time": T - 10 * DAY_MS,
        },
    ]:
        t.update(fb, trained_at_ms=T - DAY_MS)
    s = FeedbackTally.from_dict(t.to_dict()).summary()
    assert s["by_category"]["wrong_intent"] == 1 and s["by_rating"]["5"] == 1
    assert (s["satisfaction_rate"], s["corrections"], s["new_since_training"]) == (0.5, 1, 1)
    assert s["worst_intents"] == [("financing", 1)]


def test_retrain_criteria_fire_once() -> None:
    kw = dict(
        model_version="m",
        now_ms=T,
        trained_at_ms=T - 31 * DAY_MS,
        new_feedback=50,
        turns=1000,
        wrong_intent_feedback=400,
    )
    fired = due_triggers(**kw)
    assert [(f["reason"], f["value"]) for f in fired] == [
        ("FEEDBACK_COUNT", 50.0),
        ("MODEL_AGE", 31.0),
        ("LOW_ACCURACY", 0.6),
    ]
    assert due_triggers(**kw, already_fired={f["trigger_id"] for f in fired}) == []
    assert (
        due_triggers(
            **{**kw, "new_feedback": 49, "trained_at_ms": T - DAY_MS, "wrong_intent_feedback": 0}
        )
        == []
    )
    # An evaluation result overrides the online estimate.
    ev = due_triggers(**{**kw, "new_feedback": 0, "trained_at_ms": None}, evaluation_accuracy=0.65)
    assert ev[0]["details"] == {"source": "evaluation"}
    assert online_accuracy(100, 30) == 0.7
