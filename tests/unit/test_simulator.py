from __future__ import annotations

import statistics
from collections import Counter

import pytest

from continuum.demo.chat import DriftInjection, SimulatorConfig, TrafficSimulator, run
from schemas import AvroSerializer


def _events(cfg: SimulatorConfig) -> list[tuple[str, dict]]:
    return list(TrafficSimulator(cfg).events())


def test_same_seed_same_events_and_all_valid() -> None:
    cfg = SimulatorConfig(turns=500, seed=3)
    a, b = _events(cfg), _events(cfg)
    assert a == b
    ser = AvroSerializer()
    for name, ev in a:
        ser.encode(name, ev)
    assert _events(SimulatorConfig(turns=500, seed=4)) != a


def test_ab_split_is_sticky_and_near_the_share() -> None:
    evs = [
        e for n, e in _events(SimulatorConfig(turns=4000, treatment_share=0.5)) if n == "ChatTurn"
    ]
    arms: dict[str, set[str]] = {}
    for e in evs:
        arms.setdefault(e["session_id"], set()).add(e["variant"])
        assert e["model_version"] == ("okla-v2.0" if e["variant"] == "treatment" else "okla-v1.0")
    assert all(len(v) == 1 for v in arms.values())
    share = Counter(e["variant"] for e in evs)["treatment"] / len(evs)
    assert 0.4 < share < 0.6


def test_feedback_refers_to_real_turns() -> None:
    evs = _events(SimulatorConfig(turns=1000, feedback_probability=0.5))
    turns = {e["event_id"]: e for n, e in evs if n == "ChatTurn"}
    fbs = [e for n, e in evs if n == "Feedback"]
    assert 400 < len(fbs) < 600
    for f in fbs:
        t = turns[f["turn_event_id"]]
        assert (f["session_id"], f["model_version"], f["variant"]) == (
            t["session_id"],
            t["model_version"],
            t["variant"],
        )
        assert f["event_time"] > t["event_time"]


def test_drift_changes_only_after_the_injection_point_and_only_the_chosen_model() -> None:
    cfg = SimulatorConfig(
        turns=6000,
        rate=100,
        feedback_probability=0,
        drift=DriftInjection(at_s=30, models=("okla-v2.0",)),
    )
    turns = [e for _, e in _events(cfg)]
    cut = cfg.start_ms + 30_000

    def stats(rows: list[dict]) -> tuple[float, float, float]:
        lat = sorted(r["latency_ms"] for r in rows)
        return (
            lat[int(0.95 * len(lat))],
            statistics.fmean(r["confidence"] for r in rows),
            sum(r["is_fallback"] for r in rows) / len(rows),
        )

    for model, drifts in (("okla-v1.0", False), ("okla-v2.0", True)):
        before = stats([t for t in turns if t["model_version"] == model and t["event_time"] < cut])
        after = stats([t for t in turns if t["model_version"] == model and t["event_time"] >= cut])
        if drifts:
            assert after[0] > 2 * before[0]  # p95 latency
            assert after[1] < before[1] - 0.15  # confidence
            assert after[2] > before[2] + 0.1  # fallback rate
        else:
            assert after[0] == pytest.approx(before[0], rel=0.2)
            assert after[1] == pytest.approx(before[1], abs=0.03)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        SimulatorConfig(rate=0)
    with pytest.raises(ValueError, match="unknown drift kind"):
        DriftInjection(at_s=1, kinds=("weather",))


def test_run_announces_the_experiment_before_its_traffic() -> None:
    sent: list[tuple[str, dict]] = []
    run(
        lambda schema, ev: sent.append((schema, ev)), SimulatorConfig(turns=50, treatment_share=0.3)
    )
    schema, exp = sent[0]
    assert schema == "Experiment" and AvroSerializer().encode("Experiment", exp)
    assert (exp["experiment_id"], exp["control_version"], exp["treatment_version"]) == (
        "v1-vs-v2",
        "okla-v1.0",
        "okla-v2.0",
    )
    assert exp["traffic_split"] == pytest.approx(30.0)  # the planned split SRM is checked against
    assert [s for s, _ in sent[1:]].count("Experiment") == 0
    single: list[str] = []
    run(lambda s, e: single.append(s), SimulatorConfig(turns=20, treatment_version=None))
    assert "Experiment" not in single
