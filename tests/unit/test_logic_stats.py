from __future__ import annotations

import random

import numpy as np
import pytest

from continuum.demo.chat import DriftInjection, SimulatorConfig, TrafficSimulator
from streams.logic.detectors import ChangeDetector
from streams.logic.drift import (
    CONFIDENCE_DROP,
    DIRECTIONS,
    FALLBACK_RATE_INCREASE,
    INTENT_SHIFT,
    LATENCY_INCREASE,
    NULL_RATE,
    PERFORMANCE_DEGRADATION,
    TOKEN_USAGE_CHANGE,
    DriftThresholds,
    evaluate,
    kl_divergence,
)
from streams.logic.running import RunningStats
from streams.logic.sketch import QuantileSketch
from streams.logic.turns import TurnStats


def test_sketch_quantiles_within_stated_relative_error() -> None:
    rng = np.random.default_rng(1)
    xs = rng.lognormal(np.log(1200), 0.6, 20_000)
    s = QuantileSketch(0.01)
    for x in xs:
        s.update(float(x))
    exact = np.sort(xs)
    for q in (0.5, 0.9, 0.95, 0.99):
        truth = exact[int(q * (len(xs) - 1))]
        assert abs(s.quantile(q) - truth) <= 0.01 * truth


def test_sketch_merge_equals_single_sketch_and_round_trips() -> None:
    rng = random.Random(2)
    xs = [rng.expovariate(1 / 800) for _ in range(5000)] + [0.0] * 10
    whole, a, b = QuantileSketch(), QuantileSketch(), QuantileSketch()
    for i, x in enumerate(xs):
        whole.update(x)
        (a if i % 3 else b).update(x)
    merged = QuantileSketch.from_dict(a.to_dict()).merge(QuantileSketch.from_dict(b.to_dict()))
    assert merged.to_dict() == whole.to_dict()
    assert merged.quantile(0.0) == 0.0 and merged.count == 5010
    with pytest.raises(ValueError):
        QuantileSketch(0.01).merge(QuantileSketch(0.02))


def test_sketch_iqr_outliers() -> None:
    s = QuantileSketch()
    for i in range(1000):
        s.update(100 + i % 10)
    for _ in range(50):
        s.update(10_000)
    assert s.iqr_outlier_share() == pytest.approx(50 / 1050)


def test_running_stats_match_numpy_and_merge() -> None:
    rng = np.random.default_rng(3)
    xs = rng.normal(0.8, 0.1, 1001)
    a, b = RunningStats(), RunningStats()
    for i, x in enumerate(xs):
        (a if i < 400 else b).update(float(x))
    m = RunningStats.from_dict(a.to_dict()).merge(b)
    assert m.n == 1001
    assert m.mean == pytest.approx(xs.mean(), rel=1e-12)
    assert m.variance == pytest.approx(xs.var(ddof=1), rel=1e-9)


def test_kl_divergence_exact_values() -> None:
    # Identical distributions: 0.
    assert kl_divergence({"a": 50, "b": 50}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.0, abs=1e-15)
    # Hand-computed with smoothing 0.5, n = 100, k = 2:
    # p = (90.5/101, 10.5/101), q = (50.5/101, 50.5/101)
    p, q = np.array([90.5, 10.5]) / 101, np.array([50.5, 50.5]) / 101
    assert kl_divergence({"a": 90, "b": 10}, {"a": 0.5, "b": 0.5}) == pytest.approx(
        float(np.sum(p * np.log(p / q))), rel=1e-12
    )
    # An intent the baseline never saw: large but finite.
    v = kl_divergence({"a": 50, "new": 50}, {"a": 1.0})
    assert 0.3 < v < 10


def _turns(**kw) -> list[dict]:
    return [
        e
        for n, e in TrafficSimulator(SimulatorConfig(feedback_probability=0, **kw)).events()
        if n == "ChatTurn"
    ]


BASE = TurnStats.of(_turns(turns=5000, seed=11)).summary()


def test_clean_traffic_breaches_nothing() -> None:
    window = TurnStats.of(_turns(turns=3000, seed=12))
    results = evaluate(window, BASE, previous=BASE)
    assert {r.signal for r in results} >= {
        CONFIDENCE_DROP,
        FALLBACK_RATE_INCREASE,
        LATENCY_INCREASE,
        INTENT_SHIFT,
        TOKEN_USAGE_CHANGE,
        NULL_RATE,
        PERFORMANCE_DEGRADATION,
    }
    assert [r.signal for r in results if r.breached] == []


@pytest.mark.parametrize(
    ("kind", "signal"),
    [
        ("confidence", CONFIDENCE_DROP),
        ("fallback", FALLBACK_RATE_INCREASE),
        ("latency", LATENCY_INCREASE),
        ("intent", INTENT_SHIFT),
        ("tokens", TOKEN_USAGE_CHANGE),
    ],
)
def test_each_injected_drift_breaches_its_signal(kind: str, signal: str) -> None:
    window = TurnStats.of(_turns(turns=3000, seed=13, drift=DriftInjection(at_s=0, kinds=(kind,))))
    results = evaluate(window, BASE, previous=BASE)
    assert signal in {r.signal for r in results if r.breached}
    # The direction table the dashboard draws thresholds with agrees with every verdict.
    for r in results:
        rule = DIRECTIONS[r.signal]
        moved = {"down": -r.change, "up": r.change, "both": abs(r.change)}[rule]
        assert r.breached == (moved >= abs(r.threshold) - 1e-12) or r.breached == (
            moved > abs(r.threshold)
        ), (r.signal, r.change, r.threshold, r.breached)


def test_thresholds_are_the_seed_ones_and_compare_exactly() -> None:
    t = DriftThresholds()
    assert (
        t.confidence_drop,
        t.fallback_increase_pp,
        t.latency_increase,
        t.intent_kl,
        t.token_change,
    ) == (0.10, 5.0, 0.5, 0.3, 0.3)
    w = TurnStats()
    for i in range(200):
        w.update(
            {
                "latency_ms": 1600.0,
                "confidence": 0.72,
                "is_fallback": i < 30,
                "intent": "a",
                "prompt_tokens": 100,
                "completion_tokens": 30,
                "event_time": i,
            }
        )
    base = {
        "confidence_mean": 0.8,
        "fallback_rate": 0.10,
        "latency_p95_ms": 1000.0,
        "tokens_mean": 100.0,
        "intent_distribution": {"a": 1.0},
    }
    r = {x.signal: x for x in evaluate(w, base)}
    assert r[CONFIDENCE_DROP].change == pytest.approx(-0.10) and r[CONFIDENCE_DROP].breached
    assert (
        r[FALLBACK_RATE_INCREASE].change == pytest.approx(5.0)
        and r[FALLBACK_RATE_INCREASE].breached
    )
    assert (
        r[LATENCY_INCREASE].value == pytest.approx(1600, rel=0.01) and r[LATENCY_INCREASE].breached
    )
    assert r[TOKEN_USAGE_CHANGE].change == pytest.approx(0.30) and r[TOKEN_USAGE_CHANGE].breached
    assert not r[INTENT_SHIFT].breached


def test_too_few_samples_give_no_verdict() -> None:
    assert evaluate(TurnStats.of(_turns(turns=50)), BASE) == []


def test_null_rate_counts_missing_quality_fields() -> None:
    w = TurnStats()
    for i in range(200):
        w.update(
            {
                "latency_ms": 10.0,
                "confidence": None if i % 10 == 0 else 0.9,
                "intent": "a",
                "prompt_tokens": 1,
                "completion_tokens": 1,
            }
        )
    r = {x.signal: x for x in evaluate(w, {})}
    assert r[NULL_RATE].value == pytest.approx(0.10) and r[NULL_RATE].breached
    assert r[NULL_RATE].details == {"confidence": "20"}


def test_turn_stats_round_trip_plain_data() -> None:
    s = TurnStats.of(_turns(turns=500))
    back = TurnStats.from_dict(s.to_dict())
    assert back.to_dict() == s.to_dict()
    assert back.summary() == s.summary()  # every derived statistic survives, low confidence too
    assert s.low_confidence > 0


def _latencies(seed: int, n: int, change_at: int | None, factor: float) -> list[float]:
    rng = random.Random(seed)
    return [
        rng.lognormvariate(np.log(1200), 0.35)
        * (factor if change_at is not None and i >= change_at else 1)
        for i in range(n)
    ]


def test_detector_silent_on_clean_streams() -> None:
    for seed in range(10):
        d = ChangeDetector("latency_ms", log_scale=True)
        assert [p for x in _latencies(seed, 20_000, None, 1) if (p := d.update(x))] == []


@pytest.mark.parametrize(("factor", "direction"), [(2.0, "up"), (0.5, "down")])
def test_detector_flags_abrupt_change_within_a_few_hundred_events(
    factor: float, direction: str
) -> None:
    d = ChangeDetector("latency_ms", log_scale=True)
    points = [(i, p) for i, x in enumerate(_latencies(7, 3000, 1000, factor)) if (p := d.update(x))]
    assert points, "no change detected"
    i, p = points[0]
    assert 1000 <= i < 1100 and p.direction == direction
    assert p.before == pytest.approx(1200, rel=0.1)
    assert len(points) == 1  # the new level is learnt: it fires once
