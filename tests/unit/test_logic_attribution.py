"""'What changed': per-segment contributions that add up to a signal's change, ranked."""

from __future__ import annotations

import json
import random

import pytest

from jobs.notify import Batch, slack_message
from streams.logic.attribution import (
    MAX_SEGMENTS,
    Segments,
    attribute,
    kl_attribution,
)
from streams.logic.drift import evaluate, kl_divergence
from streams.logic.evaluation import baseline_event
from streams.logic.turns import TurnStats

INTENTS = ("vehicle_search", "price_inquiry", "financing", "greeting", "test_drive")
CHANNELS = ("web", "whatsapp")


def turns(
    n: int,
    seed: int,
    *,
    slow_channel: str | None = None,
    failing_intent: str | None = None,
    mix: tuple[float, ...] = (0.4, 0.25, 0.15, 0.1, 0.1),
) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        intent = rng.choices(INTENTS, mix)[0]
        channel = rng.choice(CHANNELS)
        latency = rng.lognormvariate(6.9, 0.3)
        if channel == slow_channel:
            latency *= 3
        fallback = rng.random() < (0.4 if intent == failing_intent else 0.05)
        out.append(
            {
                "event_time": 1_000 * i,
                "model_version": "m1",
                "intent": intent,
                "confidence": rng.uniform(0.6, 0.95),
                "is_fallback": fallback,
                "latency_ms": latency,
                "prompt_tokens": rng.randint(100, 300),
                "completion_tokens": rng.randint(20, 120),
                "metadata": {"channel": channel},
                "variant": None,
            }
        )
    return out


@pytest.fixture(scope="module")
def baseline() -> dict:
    return baseline_event("m1", TurnStats.of(turns(3000, 1)), "frozen", 0)


def by_dim(rows: list, dim: str) -> list:
    return [c for c in rows if c.dimension == dim]


def test_kl_terms_sum_to_the_divergence() -> None:
    window = {"vehicle_search": 50, "price_inquiry": 10, "electric": 7}
    base = {"vehicle_search": 0.5, "price_inquiry": 0.3, "greeting": 0.2}
    rows = kl_attribution(window, base)
    assert sum(c.contribution for c in rows) == pytest.approx(kl_divergence(window, base))
    # the intent absent from the baseline carries the most divergence
    assert rows[0].segment == "electric" and rows[0].share_before == 0.0


def test_fallback_rise_is_attributed_to_the_failing_intent(baseline: dict) -> None:
    window = TurnStats.of(turns(1500, 2, failing_intent="financing"))
    rows = attribute("fallback_rate_increase", window.segments, window.intents, baseline)
    total = window.fallback_rate - baseline["fallback_rate"]
    assert not by_dim(rows, "variant")  # one arm only: says nothing
    for dim in ("intent", "channel"):
        assert sum(c.contribution for c in by_dim(rows, dim)) == pytest.approx(total, abs=1e-9)
    assert rows[0].dimension == "intent" and rows[0].segment == "financing"
    assert rows[0].contribution > 0.5 * total
    assert rows[0].now > 0.3 and rows[0].before < 0.1  # its own rate before and after


def test_a_baseline_without_segments_still_sums_to_the_change(baseline: dict) -> None:
    old = {k: v for k, v in baseline.items() if k != "segments"}
    window = TurnStats.of(turns(1500, 3, failing_intent="greeting"))
    rows = attribute("fallback_rate_increase", window.segments, window.intents, old)
    total = window.fallback_rate - old["fallback_rate"]
    assert sum(c.contribution for c in by_dim(rows, "intent")) == pytest.approx(total)
    assert rows[0].segment == "greeting"


def test_a_slow_channel_explains_the_latency_rise(baseline: dict) -> None:
    window = TurnStats.of(turns(1500, 4, slow_channel="whatsapp"))
    rows = attribute("latency_increase", window.segments, window.intents, baseline)
    assert (rows[0].dimension, rows[0].segment) == ("channel", "whatsapp")
    channel = by_dim(rows, "channel")
    slow = window.latency.share_outside(0.0, baseline["latency_p95_ms"])
    base_tail = sum(
        baseline["segments"][f"channel={c}"]["share"]
        * baseline["segments"][f"channel={c}"]["tail_share"]
        for c in CHANNELS
    )
    # the contributions add up to the rise of the share of turns slower than the baseline p95
    assert sum(c.contribution for c in channel) == pytest.approx(slow - base_tail, abs=0.02)
    whatsapp = next(c for c in channel if c.segment == "whatsapp")
    assert (
        whatsapp.contribution > 0.3
        and next(c for c in channel if c.segment == "web").contribution < 0.05
    )


def test_no_change_attributes_nothing_large(baseline: dict) -> None:
    window = TurnStats.of(turns(1500, 5))
    rows = attribute("fallback_rate_increase", window.segments, window.intents, baseline)
    assert max(abs(c.contribution) for c in rows) < 0.03


def test_segments_merge_like_one_pass_and_survive_the_changelog() -> None:
    data = turns(600, 6)
    whole = TurnStats.of(data)
    a, b = TurnStats.of(data[:250]), TurnStats.of(data[250:])
    merged = TurnStats.from_dict(json.loads(json.dumps(a.to_dict()))).merge(b)
    got, want = merged.segments.summary(900.0), whole.segments.summary(900.0)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    assert (
        TurnStats.from_dict({k: v for k, v in a.to_dict().items() if k != "seg"}).segments.stats
        == {}
    )


def test_free_form_values_are_pooled_past_the_cap() -> None:
    s = Segments()
    for i in range(MAX_SEGMENTS + 25):
        s.update({"intent": "x", "latency_ms": 10.0, "metadata": {"channel": f"c{i}"}})
    channels = [k for k in s.stats if k.startswith("channel=")]
    assert len(channels) == MAX_SEGMENTS + 1
    assert s.stats["channel=(other)"].n == 25


def test_breached_signals_carry_the_top_three_and_slack_shows_them(baseline: dict) -> None:
    window = TurnStats.of(turns(1500, 7, failing_intent="financing"))
    results = {r.signal: r for r in evaluate(window, baseline)}
    fb = results["fallback_rate_increase"]
    assert fb.breached
    assert fb.details["why.1"].startswith("intent=financing: +")
    assert {"why.1", "why.2", "why.3"} <= set(fb.details)
    rows = json.loads(fb.details["attribution"])
    assert len(rows) == len(INTENTS) + len(CHANNELS) and rows[0]["segment"] == "financing"
    assert "why.1" not in results["confidence_drop"].details  # within its threshold: no attribution
    alert = {
        "event_id": "a",
        "alert_id": "a",
        "status": "OPEN",
        "severity": "HIGH",
        "title": "t",
        "alert_type": "DRIFT_DETECTED",
        "details": fb.details,
    }
    text = json.dumps(slack_message(Batch("k", (alert,))))
    assert "What changed" in text and "intent=financing" in text
