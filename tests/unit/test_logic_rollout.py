"""Gradual rollout: the schedule advances only on a healthy step and stops on a CRITICAL alert for
the treatment."""

from __future__ import annotations

from typing import Any

import pytest

from producers.experiments import experiment_event
from streams.logic.rollout import (
    COMPLETED,
    STOPPED,
    RolloutError,
    decide,
    is_rollout,
    parse_schedule,
    rollout_metadata,
)

T0 = 1_767_225_600_000
MIN = 60_000


def rollout(schedule: str = "10,25,50,100", step_s: float = 600) -> dict[str, Any]:
    ev = experiment_event(
        "disp-rollout",
        "rules-v1",
        "gbm-v2",
        split_percent=parse_schedule(schedule)[0],
        strategy="WEIGHT_BASED",
        min_samples=100,
        metadata=rollout_metadata(schedule, step_s=step_s, now_ms=T0),
    )
    return {**ev, "event_id": "e0", "event_time": T0}


def critical(model: str) -> dict[str, Any]:
    return {
        "alert_type": "HIGH_FALLBACK_RATE",
        "severity": "CRITICAL",
        "model_version": model,
        "dedup_key": f"rule:{model}:fallback_rate",
        "title": "Fallback rate 42% on " + model,
    }


def test_the_schedule_advances_step_by_step_on_healthy_traffic() -> None:
    exp = rollout()
    assert is_rollout(exp) and exp["traffic_split"] == 10.0
    counts, now, shares = [0, 0], T0, [10.0]
    for share_next in (25.0, 50.0, 100.0):
        share = exp["traffic_split"] / 100
        counts = [counts[0] + int(1000 * (1 - share)), counts[1] + int(1000 * share)]
        now += 11 * MIN
        d = decide(exp, (counts[0], counts[1]), [], now)
        assert d.event is not None, d.status
        exp = d.event
        shares.append(exp["traffic_split"])
        assert exp["traffic_split"] == share_next and exp["status"] == "RUNNING"
        assert exp["metadata"]["rollout_base"] == f"{counts[0]},{counts[1]}"
    assert shares == [10.0, 25.0, 50.0, 100.0]
    assert exp["metadata"]["rollout_state"] == COMPLETED
    assert decide(exp, (10**6, 10**6), [critical("gbm-v2")], now + 99 * MIN).event is None


def test_a_step_holds_until_time_samples_and_split_allow() -> None:
    exp = rollout()
    d = decide(exp, (900, 100), [], T0 + 5 * MIN)
    assert d.event is None and d.status["holding"] == ["step ran 300s of 600s"]
    d = decide(exp, (90, 10), [], T0 + 11 * MIN)
    assert d.event is None and d.status["holding"] == ["step samples 90/10 under 100 per arm"]
    # 50 % of the step's samples on the treatment when 10 % was planned: assignment is broken.
    d = decide(exp, (500, 500), [], T0 + 11 * MIN)
    assert d.event is None and d.status["holding"][0].startswith("sample ratio mismatch")
    assert decide(exp, (900, 100), [], T0 + 11 * MIN).event is not None


def test_a_critical_alert_for_the_treatment_stops_the_rollout() -> None:
    exp = rollout()
    d = decide(exp, (900, 100), [critical("rules-v1")], T0 + 11 * MIN)
    assert d.event is not None and d.event["traffic_split"] == 25.0  # the control's alert
    d = decide(exp, (900, 100), [critical("gbm-v2")], T0 + MIN)
    assert d.event is not None
    # Every call back to the control: share 0 while RUNNING (routers keep following it).
    assert (d.event["status"], d.event["traffic_split"]) == ("RUNNING", 0.0)
    assert d.event["metadata"]["rollout_state"] == STOPPED
    assert "CRITICAL HIGH_FALLBACK_RATE open for gbm-v2" in d.event["metadata"]["rollout_reason"]
    again = decide(exp, (950, 100), [critical("gbm-v2")], T0 + 2 * MIN)
    assert again.event is not None and again.event["event_id"] == d.event["event_id"]
    assert decide(d.event, (950, 100), [], T0 + 60 * MIN).event is None  # stays stopped
    high = {**critical("gbm-v2"), "severity": "HIGH"}
    assert decide(exp, (900, 100), [high], T0 + 11 * MIN).event["traffic_split"] == 25.0


@pytest.mark.parametrize("bad", ["", "10,5", "0,50", "10,abc", "50,150"])
def test_a_bad_schedule_is_refused(bad: str) -> None:
    with pytest.raises(RolloutError, match="rollout_schedule"):
        parse_schedule(bad)
