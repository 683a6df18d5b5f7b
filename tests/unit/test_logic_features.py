"""Per-feature drift against the training data: PSI, KS and chi-squared equal to numpy/scipy on
the same values, the mergeable bottom-k sample, and the signals and alerts a window gets."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
from scipy import stats

from streams.logic.drift import DriftThresholds
from streams.logic.features import (
    SAMPLE_ROWS,
    FeatureProfile,
    compare_with_training,
    feature_drift,
    training_metrics,
)
from streams.logic.predictions import PredictionStats

T0 = 1_767_225_600_000


def reference(rng: random.Random, n: int = 3000) -> dict[str, Any]:
    """A training profile shaped like the dispatch model server's (deciles + sample)."""
    xs = np.asarray([rng.expovariate(1 / 3.0) for _ in range(n)])
    edges = np.unique(np.quantile(xs, np.linspace(0, 1, 11)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, xs, side="right"), minlength=len(edges) + 1)
    return {
        "distance_km": {
            "type": "numeric",
            "edges": edges.tolist(),
            "shares": (counts / n).tolist(),
            "sample": xs[:500].tolist(),
        },
        "zone": {"type": "categorical", "shares": {"norte": 0.5, "sur": 0.3, "este": 0.2}},
        "rain": {"type": "categorical", "shares": {"false": 0.8, "true": 0.2}},
    }


def preds(rng: random.Random, n: int, *, scale: float = 3.0, north: float = 0.5) -> list[dict]:
    out = []
    for i in range(n):
        zone = (
            "norte" if rng.random() < north else rng.choice(["sur", "sur", "sur", "este", "este"])
        )
        out.append(
            {
                "prediction_id": f"p-{rng.random()}-{i}",
                "event_time": T0 + i,
                "confidence": 0.9,
                "predicted_value": "drv-1",
                "features": {
                    "distance_km": rng.expovariate(1 / scale),
                    "zone": zone,
                    "rain": rng.random() < 0.2,
                },
            }
        )
    return out


def test_psi_ks_and_chi2_equal_numpy_and_scipy_on_the_same_values() -> None:
    rng = random.Random(1)
    ref = reference(rng)
    window = PredictionStats.of(preds(rng, 200, scale=4.5, north=0.15))
    got = {d.feature: d for d in feature_drift(window.features, ref, 0.2, 100)}
    values = [p for p in window.features.values("distance_km")]
    assert len(values) == 200  # under SAMPLE_ROWS: every value is kept

    num = ref["distance_km"]
    hist, _ = np.histogram(values, bins=[-np.inf, *num["edges"], np.inf])
    actual = np.maximum(hist / len(values), 1e-4)
    expected = np.maximum(np.asarray(num["shares"]), 1e-4)
    assert got["distance_km"].psi == pytest.approx(
        float(np.sum((actual - expected) * np.log(actual / expected))), rel=1e-12
    )
    ks = stats.ks_2samp(values, num["sample"])
    assert got["distance_km"].test == "ks"
    assert got["distance_km"].statistic == pytest.approx(ks.statistic, rel=1e-12)
    assert got["distance_km"].p_value == pytest.approx(ks.pvalue, rel=1e-9)

    zones = window.features.categories["zone"]
    cats = ["este", "norte", "sur"]
    observed = [zones.get(c, 0) for c in cats]
    exp_shares = [0.2, 0.5, 0.3]
    chi = stats.chisquare(observed, [s * 200 for s in exp_shares])
    assert got["zone"].test == "chi2"
    assert got["zone"].statistic == pytest.approx(chi.statistic, rel=1e-12)
    assert got["zone"].p_value == pytest.approx(chi.pvalue, rel=1e-9)
    obs = np.asarray(observed) / 200
    assert got["zone"].psi == pytest.approx(
        float(np.sum((obs - exp_shares) * np.log(obs / np.asarray(exp_shares)))), rel=1e-12
    )
    assert got["zone"].breached and got["distance_km"].breached
    assert not got["rain"].breached  # booleans counted as "true"/"false", unchanged


def test_the_same_distribution_stays_under_the_threshold() -> None:
    rng = random.Random(2)
    ref = reference(rng)
    for _ in range(5):
        window = PredictionStats.of(preds(rng, 2000))
        assert len(window.features.values("distance_km")) == SAMPLE_ROWS
        drift = feature_drift(window.features, ref, 0.2, 100)
        assert [d.feature for d in drift] == ["distance_km", "rain", "zone"]
        assert not any(d.breached for d in drift), [(d.feature, d.psi) for d in drift]


def test_the_bottom_k_sample_merges_exactly_and_round_trips() -> None:
    rng = random.Random(3)
    rows = preds(rng, 700)
    whole = FeatureProfile()
    a, b = FeatureProfile(), FeatureProfile()
    for i, p in enumerate(rows):
        whole.update(p["prediction_id"], p["features"])
        (a if i % 3 else b).update(p["prediction_id"], p["features"])
    merged = FeatureProfile.from_dict(json.loads(json.dumps(a.to_dict()))).merge(b)
    assert merged.rows == whole.rows and merged.categories == whole.categories
    again = FeatureProfile.from_dict(merged.to_dict()).merge(b)  # a redelivered partial
    assert again.rows == whole.rows  # rows are not doubled (categorical counts are, by design)
    # Stats carry the profile through their own round trip.
    stats_ = PredictionStats.of(rows)
    back = PredictionStats.from_dict(json.loads(json.dumps(stats_.to_dict())))
    assert back.features.rows == stats_.features.rows


def test_too_few_values_give_no_verdict() -> None:
    rng = random.Random(4)
    window = PredictionStats.of(preds(rng, 50))
    assert feature_drift(window.features, reference(rng), 0.2, 100) == []


def test_a_window_is_compared_with_training_metrics() -> None:
    rng = random.Random(5)
    training = {"confidence_mean": 0.95, "feature_distributions": reference(rng)}
    window = PredictionStats.of(preds(rng, 400, scale=6.0))
    results = {r.signal: r for r in compare_with_training(window, training, DriftThresholds())}
    assert set(results) == {
        "feature_drift:distance_km",
        "feature_drift:rain",
        "feature_drift:zone",
        "confidence_vs_training",
    }
    assert results["feature_drift:distance_km"].breached
    assert results["feature_drift:distance_km"].details["test"] == "ks"
    conf = results["confidence_vs_training"]
    assert conf.baseline == 0.95 and conf.value == pytest.approx(0.9)
    assert not conf.breached  # -5.3 %, the seed's drift threshold is 10 %
    strict = DriftThresholds(confidence_drop=0.05, feature_psi=5.0)
    results = {r.signal: r for r in compare_with_training(window, training, strict)}
    assert results["confidence_vs_training"].breached
    assert not results["feature_drift:distance_km"].breached  # the threshold is a setting


def test_training_metrics_are_parsed_once_and_bad_text_is_none() -> None:
    raw = json.dumps({"accuracy": 0.9})
    assert training_metrics(raw) == {"accuracy": 0.9}
    assert training_metrics(raw) is training_metrics(raw)
    assert training_metrics("not json") is None and training_metrics(None) is None
    assert training_metrics("[1]") is None
