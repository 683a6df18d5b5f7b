from __future__ import annotations

from typing import Any

import pytest

from schemas import AvroSerializer
from streams.logic.alert_rules import (
    change_request,
    classify,
    drift_requests,
    memory_requests,
    notice_request,
    rule_requests,
    store_requests,
    worker_requests,
)
from streams.logic.alerts import (
    SEVERITIES,
    AlertBook,
    AlertThresholds,
    apply,
    quiet_resolve,
    raise_request,
    resolve_request,
)
from streams.logic.drift import FALLBACK_RATE_INCREASE, LATENCY_INCREASE, SignalResult
from streams.logic.feedback import FeedbackTally
from streams.logic.health import DEGRADED, HEALTHY, UNHEALTHY, check_health
from streams.logic.retrain import DAY_MS, due_triggers, online_accuracy

T = 1_767_225_600_000


def _lat(breached: bool, change: float = 0.8) -> SignalResult:
    return SignalResult(LATENCY_INCREASE, 3000.0, 1800.0, change, 0.5, breached)


def test_alert_dedup_cooldown_escalation_and_resolution() -> None:
    book = AlertBook(AlertThresholds(cooldown_s=600))
    first = book.apply(drift_requests("okla-v1.0", [_lat(True)], T))
    assert (
        len(first) == 1
        and first[0]["status"] == "OPEN"
        and first[0]["alert_type"] == "DRIFT_DETECTED"
    )
    assert first[0]["severity"] == "MEDIUM"
    AvroSerializer().encode("Alert", first[0])  # a valid Alert event
    assert book.apply(drift_requests("okla-v1.0", [_lat(True)], T + 60_000)) == []  # cooling
    escalated = book.apply(drift_requests("okla-v1.0", [_lat(True, change=1.5)], T + 120_000))
    assert escalated[0]["severity"] == "HIGH" and escalated[0]["alert_id"] == first[0]["alert_id"]
    assert escalated[0]["details"]["transition"] == "escalated"
    again = book.apply(drift_requests("okla-v1.0", [_lat(True, change=1.5)], T + 721_000))
    assert len(again) == 1 and again[0]["details"]["transition"] == "reminder"
    resolved = book.apply(drift_requests("okla-v1.0", [_lat(False)], T + 900_000))
    assert resolved[0]["status"] == "RESOLVED" and resolved[0]["alert_id"] == first[0]["alert_id"]
    AvroSerializer().encode("Alert", resolved[0])
    assert book.stats() == {"open": 0, "raised": 3, "suppressed": 1, "resolved": 1}
    # Nothing open: a resolve request is a no-op.
    assert book.apply(drift_requests("okla-v1.0", [_lat(False)], T + 960_000)) == []


def test_event_ids_are_a_function_of_the_inputs() -> None:
    """Two owners fed the same requests emit the same ids; a redelivered request re-emits the
    transition it made the first time (same id) and changes nothing."""
    reqs = [
        *drift_requests("m", [_lat(True)], T),
        *drift_requests("m", [_lat(True, change=1.5)], T + 60_000),
        *drift_requests("m", [_lat(False)], T + 120_000),
    ]
    a, b = AlertBook(), AlertBook()
    ids_a = [e["event_id"] for e in a.apply(reqs)]
    assert ids_a == [e["event_id"] for e in b.apply(reqs)]
    assert len(set(ids_a)) == 3
    # Redelivery of the escalation after the state moved on: same event again, state unchanged.
    before = a.stats()
    again = a.apply([reqs[1]])
    assert [e["event_id"] for e in again] == [ids_a[1]] and a.stats() == before
    # A redelivery of a request answered before a crash: the restored state re-emits it.
    state, events = apply(None, reqs[0])
    state2, replay = apply(state, reqs[0])
    assert replay == events and state2 == state


def test_operator_and_automatic_resolve_take_one_path() -> None:
    book = AlertBook()
    [opened] = book.apply(drift_requests("m", [_lat(True)], T))
    [by_operator] = book.apply([resolve_request(opened["dedup_key"], T + 5_000, "by hand", "api")])
    assert by_operator["status"] == "RESOLVED" and by_operator["source"] == "api"
    assert by_operator["details"]["resolved_by"] == "api"
    # The automatic resolve that follows finds nothing open: no second RESOLVED.
    assert book.apply(drift_requests("m", [_lat(False)], T + 60_000)) == []
    # A breach that continues after the operator's resolve opens a new alert at once.
    [reopened] = book.apply(drift_requests("m", [_lat(True)], T + 120_000))
    assert reopened["status"] == "OPEN" and reopened["alert_id"] != opened["alert_id"]


def test_change_point_alert_resolves_after_a_quiet_period() -> None:
    t = AlertThresholds(quiet_resolve_s=600)
    book = AlertBook(t)
    req = change_request("m", "latency_ms", "up", "page_hinkley", 1000.0, 2000.0, T, t)
    [opened] = book.apply([req])
    assert (opened["severity"], opened["alert_type"]) == ("LOW", "DRIFT_DETECTED")
    key = opened["dedup_key"]
    assert quiet_resolve(book.states[key], key, T + 599_999) is None
    due = quiet_resolve(book.states[key], key, T + 700_000)
    assert due is not None and due["event_time"] == T + 600_000
    [resolved] = book.apply([due])
    assert resolved["status"] == "RESOLVED" and book.open() == {}
    assert quiet_resolve(book.states[key], key, T + 900_000) is None


@pytest.mark.parametrize(("rate", "severity"), [(0.06, "HIGH"), (0.12, "CRITICAL")])
def test_fallback_alert_uses_warning_and_critical_levels(rate: float, severity: str) -> None:
    r = SignalResult(FALLBACK_RATE_INCREASE, rate, 0.0, rate * 100, 5.0, True)
    ev = AlertBook().apply(drift_requests("m", [r], T))[0]
    assert (ev["alert_type"], ev["severity"]) == ("HIGH_FALLBACK_RATE", severity)
    assert ev["recommendation"]


def _summary(n: int = 500, fallback: float = 0.0, confidence: float = 0.9) -> dict[str, Any]:
    return {
        "sample_size": n,
        "fallback_rate": fallback,
        "confidence_mean": confidence,
        "window_start": T - 3_600_000,
        "window_end": T,
    }


@pytest.mark.parametrize(
    ("fallback", "expected"),
    [(0.0499, None), (0.05, "HIGH"), (0.0999, "HIGH"), (0.10, "CRITICAL"), (0.2, "CRITICAL")],
)
def test_seed_fallback_rule_fires_at_its_thresholds(fallback: float, expected: str | None) -> None:
    """The dispatch seed's absolute rule: 5 % warning, 10 % critical, without any baseline."""
    reqs = rule_requests("xgb-v2", _summary(fallback=fallback), None, T, predictive=True)
    [fb] = [r for r in reqs if r["dedup_key"] == "rule:xgb-v2:fallback_rate"]
    if expected is None:
        assert fb["status"] == "RESOLVED"
    else:
        assert (fb["status"], fb["alert_type"], fb["severity"]) == (
            "OPEN",
            "HIGH_FALLBACK_RATE",
            expected,
        )
        assert fb["details"]["fallback_warning"] == "0.05"
    # A chatbot's fallback intent is judged against its baseline, not by the absolute rule.
    chat = rule_requests("okla", _summary(fallback=fallback), None, T, predictive=False)
    assert not [r for r in chat if r["dedup_key"].endswith("fallback_rate")]


@pytest.mark.parametrize(("confidence", "fires"), [(0.75, False), (0.7499, True), (0.5, True)])
def test_seed_minimum_confidence_rule(confidence: float, fires: bool) -> None:
    reqs = rule_requests("m", _summary(confidence=confidence), None, T)
    [r] = [r for r in reqs if r["dedup_key"] == "rule:m:min_confidence"]
    assert (r["status"] == "OPEN") is fires
    if fires:
        assert (r["alert_type"], r["severity"]) == ("LOW_CONFIDENCE", "HIGH")


@pytest.mark.parametrize(("confidence", "fires"), [(0.8101, False), (0.81, True), (0.99, True)])
def test_seed_drift_threshold_on_mean_confidence(confidence: float, fires: bool) -> None:
    """10 % relative change of mean confidence against the baseline (0.9), either way, at the
    threshold included."""
    base = {"confidence_mean": 0.9}
    reqs = rule_requests("m", _summary(confidence=confidence), base, T)
    [r] = [r for r in reqs if r["dedup_key"] == "rule:m:confidence_drift"]
    assert (r["status"] == "OPEN") is fires
    # Reported once: not again when the windowed confidence-drop signal already breached.
    both = rule_requests(
        "m", _summary(confidence=confidence), base, T, breached=["confidence_drop"]
    )
    assert [x["status"] for x in both if x["dedup_key"] == "rule:m:confidence_drift"] == [
        "RESOLVED"
    ]


def test_rules_need_enough_samples() -> None:
    assert rule_requests("m", _summary(n=99, fallback=0.5), None, T, predictive=True) == []


def test_memory_and_store_alerts() -> None:
    gib = 2**30
    assert memory_requests("w", int(0.79 * gib), gib, T)[0]["status"] == "RESOLVED"
    [high] = memory_requests("w", int(0.85 * gib), gib, T)
    assert (high["alert_type"], high["severity"]) == ("MEMORY_USAGE", "HIGH")
    [crit] = memory_requests("w", int(0.95 * gib), gib, T)
    assert crit["severity"] == "CRITICAL"
    book = AlertBook()
    [down] = book.apply(store_requests("kafka@w", "cannot read offsets", T))
    assert (down["alert_type"], down["severity"]) == ("DATABASE_ERROR", "HIGH")
    assert book.apply(store_requests("kafka@w", "still down", T + 10_000)) == []  # once
    [back] = book.apply(store_requests("kafka@w", None, T + 20_000))
    assert back["status"] == "RESOLVED"


def test_every_severity_is_used() -> None:
    """CRITICAL, HIGH, MEDIUM (drift), LOW (change point), INFO (baseline notice)."""
    t = AlertThresholds()
    seen = {
        classify(SignalResult(FALLBACK_RATE_INCREASE, 0.2, 0.0, 20.0, 5.0, True), t)[1],
        classify(_lat(True, change=1.5), t)[1],
        classify(_lat(True), t)[1],
        change_request("m", "latency_ms", "up", "adwin", 1.0, 2.0, T)["severity"],
        notice_request("baseline:m", "Baseline frozen", T)["severity"],
    }
    assert seen == set(SEVERITIES)


def test_unknown_alert_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown alert type 'DISK_FULL'"):
        raise_request("DISK_FULL", "HIGH", "k", "t", T)
    with pytest.raises(ValueError, match="unknown severity 'URGENT'"):
        raise_request("SERVICE_DOWN", "URGENT", "k", "t", T)


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
    t = AlertThresholds(service_timeout_s=30, cooldown_s=600)
    book = AlertBook(t)
    assert book.apply(worker_requests({"w1": T - 5_000, "w2": T - 1_000}, T, t)) == []
    [some] = book.apply(worker_requests({"w1": T - 5_000, "w2": T - 45_000}, T, t))
    assert (some["alert_type"], some["severity"], some["status"]) == (
        "SERVICE_DOWN",
        "HIGH",
        "OPEN",
    )
    assert "w2 silent 45s" in some["message"] and some["signals"][0]["current"] == 45.0
    assert book.apply(worker_requests({"w1": T - 5_000, "w2": T - 46_000}, T + 1_000, t)) == []
    [worse] = book.apply(worker_requests({"w1": T - 40_000, "w2": T - 46_000}, T + 2_000, t))
    assert worse["severity"] == "CRITICAL" and worse["title"] == "No inference worker is answering"
    [back] = book.apply(worker_requests({"w1": T + 3_000, "w2": T + 3_000}, T + 3_000, t))
    assert back["status"] == "RESOLVED"
    assert book.apply(worker_requests({"gone": T - 5 * 3600_000}, T, t)) == []  # retired


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


def test_a_request_re_sent_after_a_restart_never_rewinds_an_alert() -> None:
    """Stage 2 re-sends its last decisions after a restart (marked replayed): one the owner has
    seen re-emits the same transition; one older than the key's newest request is stale."""
    book = AlertBook()
    opened_req = drift_requests("m", [_lat(True)], T)[0]
    [opened] = book.apply([opened_req])
    [resolved] = book.apply(drift_requests("m", [_lat(False)], T + 60_000))
    replay = {**opened_req, "details": {**opened_req["details"], "replayed": "1"}}
    assert book.apply([replay]) == [opened]  # seen: the same event again, state unchanged
    assert book.open() == {}
    older = drift_requests("m", [_lat(True)], T + 30_000)[0]
    stale = {**older, "details": {**older["details"], "replayed": "1"}}
    assert book.apply([stale]) == [] and book.open() == {}
    newer = drift_requests("m", [_lat(True)], T + 90_000)[0]
    [reopened] = book.apply([{**newer, "details": {**newer["details"], "replayed": "1"}}])
    assert reopened["status"] == "OPEN" and "replayed" not in reopened["details"]
    assert resolved["status"] == "RESOLVED"
