from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.logic.drift import LATENCY_INCREASE, evaluate
from streams.logic.thresholds import (
    NAMES,
    Thresholds,
    check,
    in_force,
    load_file,
    parse_assignments,
    seed_defaults,
)
from streams.logic.turns import TurnStats
from streams.settings import StreamsSettings


def test_seed_values_are_the_defaults() -> None:
    seed = seed_defaults()
    assert (seed["confidence_drop"], seed["fallback_increase_pp"], seed["latency_increase"]) == (
        0.10,
        5.0,
        0.50,
    )
    assert (seed["intent_kl"], seed["token_change"], seed["min_accuracy"]) == (0.3, 0.30, 0.70)
    assert (seed["fallback_warning"], seed["fallback_critical"], seed["min_confidence"]) == (
        0.05,
        0.10,
        0.75,
    )
    assert (seed["drift"], seed["service_timeout_s"], seed["min_new_feedback"]) == (0.10, 30, 50)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"latency_increas": "0.8"}, "unknown threshold 'latency_increas'; known: "),
        ({"latency_increase": "-0.1"}, "latency_increase='-0.1': expected a finite number >= 0"),
        ({"min_confidence": "1.5"}, "min_confidence='1.5': a share, expected 0..1"),
        ({"min_samples": "10.5"}, "min_samples='10.5': expected a whole number"),
        ({"intent_kl": "abc"}, "intent_kl='abc': expected a number"),
        ({"fallback_warning": "0.2"}, "fallback_warning=0.2 exceeds fallback_critical=0.1"),
    ],
)
def test_bad_values_are_refused_naming_the_value(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(values)


def test_nothing_is_half_applied() -> None:
    """One bad name refuses the whole set, and every problem is named at once."""
    with pytest.raises(ValueError) as err:
        check({"latency_increase": "0.8", "nope": "1", "null_rate": "-1"})
    assert "unknown threshold 'nope'" in str(err.value) and "null_rate='-1'" in str(err.value)


def test_per_worker_names_cannot_be_set_per_model() -> None:
    with pytest.raises(ValueError, match="service_timeout_s is set per worker"):
        check({"service_timeout_s": "60"}, per_model=True)
    assert check({"service_timeout_s": "60"}) == {"service_timeout_s": 60.0}


def test_precedence_seed_settings_model() -> None:
    t, sources = in_force({"latency_increase": 0.8, "intent_kl": 0.4}, {"intent_kl": 0.5})
    assert (t.drift.latency_increase, t.drift.intent_kl, t.drift.token_change) == (0.8, 0.5, 0.3)
    assert (sources["latency_increase"], sources["intent_kl"], sources["token_change"]) == (
        "settings",
        "model",
        "seed",
    )
    assert set(sources) == set(NAMES)


def test_one_name_sets_every_group_that_holds_it() -> None:
    t = Thresholds().with_values({"fallback_warning": 0.07, "min_samples": 50})
    assert t.alerts.fallback_warning == t.health.fallback_warning == 0.07
    assert t.drift.min_samples == 50 and isinstance(t.drift.min_samples, int)


def test_settings_file_then_environment(tmp_path: Path) -> None:
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"thresholds": {"latency_increase": 0.9, "intent_kl": 0.4}}))
    s = StreamsSettings.from_env(
        {"CONTINUUM_THRESHOLDS_FILE": str(f), "CONTINUUM_THRESHOLDS": "intent_kl=0.6"}
    )
    assert s.global_thresholds() == {"latency_increase": 0.9, "intent_kl": 0.6}
    bad = StreamsSettings.from_env({"CONTINUUM_THRESHOLDS": "intent_kl=-1"})
    with pytest.raises(ValueError, match="CONTINUUM_THRESHOLDS: intent_kl='-1'"):
        bad.global_thresholds()
    f.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_file(f)
    with pytest.raises(ValueError, match="expected name=value, got 'intent_kl'"):
        parse_assignments(["intent_kl"])


def _latency_window(p95_factor: float) -> tuple[TurnStats, dict[str, float]]:
    w = TurnStats()
    for i in range(200):
        w.update(
            {
                "latency_ms": 1000.0 * p95_factor * (1 + i / 400),
                "confidence": 0.9,
                "intent": "x",
                "is_fallback": False,
            }
        )
    base = TurnStats()
    for i in range(200):
        base.update(
            {
                "latency_ms": 1000.0 * (1 + i / 400),
                "confidence": 0.9,
                "intent": "x",
                "is_fallback": False,
            }
        )
    return w, base.summary()


def test_an_override_changes_the_verdict() -> None:
    window, baseline = _latency_window(1.6)
    [seed] = [r for r in evaluate(window, baseline) if r.signal == LATENCY_INCREASE]
    assert seed.breached and seed.threshold == 0.5
    raised = Thresholds().with_values({"latency_increase": 0.8}).drift
    [tuned] = [r for r in evaluate(window, baseline, raised) if r.signal == LATENCY_INCREASE]
    assert not tuned.breached and tuned.threshold == 0.8
