"""The streams worker's Prometheus counters count exactly what a folded batch held."""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry

from continuum.demo.chat import SimulatorConfig, TrafficSimulator
from streams.metrics import StreamsMetrics


def test_batch_counts_by_intent_fallback_confidence_and_feedback() -> None:
    events = list(TrafficSimulator(SimulatorConfig(turns=800, seed=2)).events())
    turns = [e for s, e in events if s == "ChatTurn"]
    feedback = [e for s, e in events if s == "Feedback"]
    m = StreamsMetrics(CollectorRegistry())
    m.observe("ChatTurn", turns[:300])
    m.observe("ChatTurn", turns[300:])
    m.observe("Feedback", feedback)
    r = m.registry
    by_intent = Counter((t["model_version"], t["intent"]) for t in turns)
    for (model, intent), n in by_intent.items():
        got = r.get_sample_value(
            "continuum_turns_total", {"model_version": model, "intent": intent}
        )
        assert got == n
    for model in {t["model_version"] for t in turns}:
        mine = [t for t in turns if t["model_version"] == model]
        assert r.get_sample_value(
            "continuum_fallback_turns_total", {"model_version": model}
        ) == sum(t["is_fallback"] for t in mine)
        low = sum(1 for t in mine if t["confidence"] is not None and t["confidence"] <= 0.75)
        assert (
            r.get_sample_value(
                "continuum_turn_confidence_bucket", {"model_version": model, "le": "0.75"}
            )
            == low
        )
        assert r.get_sample_value(
            "continuum_turn_latency_ms_count", {"model_version": model}
        ) == len(mine)
    satisfied = sum(1 for f in feedback if (f.get("rating") or 0) >= 4 or f.get("thumbs") == "UP")
    total_sat = sum(
        s.value
        for metric in r.collect()
        if metric.name == "continuum_feedback"
        for s in metric.samples
        if s.name == "continuum_feedback_total" and s.labels["satisfied"] == "true"
    )
    assert total_sat == satisfied > 0
