"""Any ML model: Prediction/Outcome statistics, their stage-1 fold next to chat turns, and the
prediction simulator."""

from __future__ import annotations

import pytest

from continuum.demo.dispatch import PredictionSimConfig, PredictionSimulator
from streams.logic.partials import (
    OUTCOMES,
    PREDICTIONS,
    TURNS,
    Stage1Folder,
    merge_slots,
    source_of,
    state_of,
    targets_of_prediction,
)
from streams.logic.predictions import OutcomeTally, PredictionStats
from tests.examples import EXAMPLES

HOP = 10_000


def pred(**over: object) -> dict:
    return {**EXAMPLES["Prediction"], **over}


def test_prediction_stats_count_fallbacks_labels_nulls_and_skip_missing_latency() -> None:
    s = PredictionStats.of(
        [
            pred(),  # features.rain is None
            pred(confidence=0.5, fallback_used=True, predicted_value="driver-3", features={}),
            pred(confidence=None, latency_ms=None, predicted_value=4.5, features={"a": 1}),
            pred(predicted_value=None, features={"a": None, "b": None}, event_time=5),
        ]
    )
    assert s.n == 4 and s.fallbacks == 1 and s.low_confidence == 1
    assert s.confidence.n == 3 and s.latency.count == 3  # a missing latency is not a zero
    assert s.intents == {"driver-17": 1, "driver-3": 1}  # numeric or null: no label
    assert s.nulls == {
        "features.rain": 1,
        "confidence": 1,
        "predicted_value": 1,
        "features.a": 1,
        "features.b": 1,
    }
    assert s.rows_with_null == 3 and s.null_rate == 0.75
    assert (s.first_ms, s.last_ms) == (5, EXAMPLES["Prediction"]["event_time"])
    summary = s.summary()
    assert summary["tokens_mean"] is None and summary["fallback_rate"] == 0.25
    again = state_of({"k": PREDICTIONS, "st": s.to_dict()})
    assert type(again) is PredictionStats and again.to_dict() == s.to_dict()


def test_outcome_accuracy_counts_only_outcomes_that_say() -> None:
    a, b = OutcomeTally(), OutcomeTally()
    for ok in (True, True, False, None):
        a.update({"success": ok})
    b.update({"success": False})
    assert a.summary() == {
        "outcomes": 4,
        "success": 2,
        "failure": 1,
        "unknown": 1,
        "accuracy": 2 / 3,
    }
    a.merge(b)
    assert (a.judged, a.accuracy) == (4, 0.5)
    assert OutcomeTally().accuracy is None
    assert state_of({"k": OUTCOMES, "st": a.to_dict()}).summary() == a.summary()


def test_predictions_fold_beside_turns_on_the_same_partition_numbers() -> None:
    """Partition 0 of chat.turns and partition 0 of predictions are different logs: their
    offsets, newest buckets and retention are kept apart."""
    folder = Stage1Folder(HOP, retention_ms=2 * HOP)
    turn = {**EXAMPLES["ChatTurn"], "event_time": 10 * HOP}
    p_old = pred(event_time=HOP)
    slots: dict[str, dict] = {}
    out = folder.fold(
        [
            ("turn", turn, 0, 7),
            ("prediction", p_old, 0, 7),  # same partition and offset: not a replay
            ("outcome", EXAMPLES["Outcome"], 0, 3),
            ("outcome", {**EXAMPLES["Outcome"], "model_version": None}, 0, 4),
        ],
        slots.get,
    )
    slots.update(out)
    kinds = {(p["k"], p["g"], p["b"]) for p in out.values()}
    assert (PREDICTIONS, "p:xgb-v2", HOP) in kinds and (OUTCOMES, "p:xgb-v2", 0) in kinds
    assert (TURNS, "m:okla-v1.0", 10 * HOP) in kinds
    assert folder.late == 0  # the turn 9 hops ahead does not close the prediction's bucket
    assert folder.unattributed == 1
    assert merge_slots(out.values(), PREDICTIONS, "xgb-v2|*").n == 1
    # One window per model, its phases together (nothing reads a per-phase window).
    assert {p["s"] for p in out.values() if p["k"] == PREDICTIONS} == {"xgb-v2|*"}
    assert folder.horizon(0, PREDICTIONS) == HOP - 2 * HOP
    assert folder.horizon(0) == 10 * HOP - 2 * HOP
    # A replay of the same records folds nothing; a late prediction is counted, not folded.
    folder.fold([("prediction", p_old, 0, 7)], slots.get)
    assert folder.skipped == 1  # its partial already holds it
    folder.fold([("prediction", pred(event_time=5 * HOP), 0, 8)], slots.get)
    folder.fold([("prediction", pred(event_time=HOP), 0, 9)], slots.get)
    assert folder.late == 1
    assert source_of(PREDICTIONS) == "prediction" and source_of(OUTCOMES) == "outcome"
    assert targets_of_prediction(pred(phase=None), HOP) == [
        (PREDICTIONS, "xgb-v2|*", "p:xgb-v2", EXAMPLES["Prediction"]["event_time"])
    ]


def test_prediction_simulator_is_deterministic_and_drifts_when_told() -> None:
    cfg = PredictionSimConfig(predictions=400, rate=10, drift_at_s=20, drift=("confidence",))
    events = list(PredictionSimulator(cfg).events())
    assert events == list(PredictionSimulator(cfg).events())
    preds = [e for s, e in events if s == "Prediction"]
    outcomes = [e for s, e in events if s == "Outcome"]
    assert len(preds) == 400 and 250 < len(outcomes) < 400
    assert {o["prediction_id"] for o in outcomes} <= {p["prediction_id"] for p in preds}
    before = PredictionStats.of(p for p in preds if p["event_time"] < cfg.start_ms + 20_000)
    after = PredictionStats.of(p for p in preds if p["event_time"] >= cfg.start_ms + 20_000)
    assert after.confidence.mean < before.confidence.mean - 0.2
    with pytest.raises(ValueError, match="unknown drift kind"):
        PredictionSimConfig(drift=("tokens",))
    with pytest.raises(ValueError, match="accuracy must be in"):
        PredictionSimConfig(accuracy=1.5)


def test_performance_is_outcome_accuracy_when_both_periods_have_it() -> None:
    from streams.logic.drift import PERFORMANCE_DEGRADATION, evaluate

    sim = PredictionSimulator(PredictionSimConfig(predictions=600))
    window = PredictionStats.of(e for s, e in sim.events() if s == "Prediction")
    base = window.summary()

    def perf(accuracy: float | None, previous_accuracy: float | None):
        previous = {**base, "accuracy": previous_accuracy}
        results = evaluate(window, base, previous=previous, accuracy=accuracy)
        return next(r for r in results if r.signal == PERFORMANCE_DEGRADATION)

    drop = perf(0.72, 0.9)  # -20 % accuracy, same confidence and fallbacks
    assert drop.details["measure"] == "accuracy" and drop.breached
    assert drop.change == pytest.approx(-0.2) and drop.threshold == -0.1
    assert not perf(0.85, 0.9).breached  # -5.6 %
    # Without accuracy on both sides: effective confidence, unchanged here.
    for now, before in ((None, 0.9), (0.5, None)):
        same = perf(now, before)
        assert same.details["measure"] == "effective confidence" and same.change == 0


def test_a_predictive_models_ab_test_is_analysed_from_predictions_and_outcomes() -> None:
    """rules-v1 (control) against xgb-v2 (treatment), arms by phase: predictions fill the arms'
    counts, latency and confidence; outcomes with a verdict their satisfaction (success)."""
    from streams.logic.evaluation import evaluate_experiment

    cfg = PredictionSimConfig(predictions=4000, experiment_id="disp-ab", control_gap=0.12)
    sim = PredictionSimulator(cfg)
    experiment = sim.experiment_event()
    assert experiment is not None and experiment["control_version"] == "rules-v1"
    events = list(sim.events())
    folder, slots = Stage1Folder(HOP), {}
    items = [(s.lower(), e, i % 3, i) for i, (s, e) in enumerate(events)]
    slots.update(folder.fold(items, slots.get))
    result = evaluate_experiment(experiment, list(slots.values()), {})
    preds = [e for s, e in events if s == "Prediction"]
    outcomes = [e for s, e in events if s == "Outcome"]
    for arm, model in (("control", "rules-v1"), ("treatment", "xgb-v2")):
        mine = [p for p in preds if p["phase"] == arm]
        assert {p["model_version"] for p in mine} == {model}
        assert result[arm]["turns"] == len(mine)
        judged = [o for o in outcomes if o["variant"] == arm]
        assert result[arm]["feedback"] == len(judged)
        rate = sum(o["success"] for o in judged) / len(judged)
        assert result[arm]["satisfaction_rate"] == pytest.approx(rate)
    tests = {t["metric"]: t for t in result["tests"]}
    assert tests["satisfaction"]["significant"] and tests["satisfaction"]["better"] == "treatment"
    assert tests["confidence"]["significant"] and tests["confidence"]["better"] == "treatment"
    assert result["decision"] == "treatment" and not result["srm"]["mismatch"]
    assert result["srm"]["unit"] == "turns"  # predictions, not sessions, are what is split
    assert result["recommendation"]["recommendation"] == "gradual_rollout"  # > 10 % confidence
    # Each arm's model version is also monitored on its own, in its model's window.
    for arm, model in (("control", "rules-v1"), ("treatment", "xgb-v2")):
        assert merge_slots(slots.values(), PREDICTIONS, f"{model}|*").n == result[arm]["turns"]


def test_outcomes_written_before_the_experiment_fields_still_decode() -> None:
    import io

    import fastavro

    from schemas import AvroDeserializer, default_catalog
    from schemas.serde import SINGLE_OBJECT_MAGIC

    old = next(v for v in default_catalog().versions("Outcome") if v.label == "Outcome.v1")
    body = io.BytesIO()
    record = {k: v for k, v in EXAMPLES["Outcome"].items() if k not in ("experiment_id", "variant")}
    fastavro.schemaless_writer(body, old.wire, record)
    decoded = AvroDeserializer().decode(SINGLE_OBJECT_MAGIC + old.fingerprint + body.getvalue())
    assert decoded.writer == "Outcome.v1"
    assert decoded.record["experiment_id"] is None and decoded.record["success"] is True


def test_realtime_run_holds_each_outcome_until_its_time() -> None:
    import time

    from continuum.demo.dispatch import run_predictions

    cfg = PredictionSimConfig(predictions=50, rate=500, outcome_delay_ms=200)
    sent: list[tuple[float, str, dict]] = []
    t0 = time.monotonic()
    sim = run_predictions(lambda s, e: sent.append((time.monotonic(), s, e)), cfg, realtime=True)
    outcomes = [(t, e) for t, s, e in sent if s == "Outcome"]
    assert len(outcomes) == sim.outcomes > 20 and sim.predictions == 50
    for t, e in outcomes:  # never before its own time (200 ms after its prediction's)
        assert t - t0 >= (e["event_time"] - cfg.start_ms) / 1000
    # Not real time: everything at once, each outcome right after its prediction.
    fast = []
    run_predictions(lambda s, e: fast.append(s), cfg)
    assert fast.count("Outcome") == sim.outcomes and fast[0] == "Prediction"
    stopped: list[str] = []
    run_predictions(lambda s, e: stopped.append(s), cfg, should_stop=lambda: len(stopped) >= 5)
    assert len(stopped) == 5


def test_a_model_failing_from_its_first_minutes_is_alerted_before_any_baseline() -> None:
    """The seed's fallback rule needs no baseline: 30 % fallbacks in the first windows raise
    HIGH_FALLBACK_RATE (CRITICAL) while the baseline is still far from frozen, once per window."""
    from streams.logic.evaluation import EvalConfig, evaluate_model

    cfg = EvalConfig(window_ms=6 * HOP, hop_ms=HOP, freeze_after=10**6)
    folder = Stage1Folder(HOP, retention_ms=cfg.retention_ms)
    slots: dict[str, dict] = {}
    items = [
        (
            "prediction",
            pred(prediction_id=f"p{i}", event_time=i * 100, fallback_used=i % 10 < 3),
            0,
            i,
        )
        for i in range(1000)
    ]
    slots.update(folder.fold(items, slots.get))
    parts = [p for p in slots.values() if p["g"] == "p:xgb-v2"]
    out = evaluate_model("xgb-v2", parts, None, {}, cfg, kind=PREDICTIONS)
    assert out["baseline"] is None
    raised = [a for a in out["alerts"] if a["status"] == "OPEN"]
    assert [(a["alert_type"], a["severity"]) for a in raised] == [
        ("HIGH_FALLBACK_RATE", "CRITICAL")
    ]
    again = evaluate_model("xgb-v2", parts, None, out["state"], cfg, kind=PREDICTIONS)
    assert again["alerts"] == []  # the same window end is not requested twice
