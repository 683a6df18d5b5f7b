"""Semantic drift of user queries: the MMD permutation test keeps its false-alarm rate on identical
distributions, fires on a new topic, and names the topic with examples; the query sample is a
mergeable bottom-k."""

from __future__ import annotations

import random

import pytest

from continuum.demo.chat import DriftInjection, SimulatorConfig, TrafficSimulator
from streams.logic.drift import DriftThresholds
from streams.logic.evaluation import EvalConfig, evaluate_model
from streams.logic.partials import Stage1Folder
from streams.logic.semantic import (
    HashedNgrams,
    QuerySample,
    emerging_topics,
    mmd_test,
    normalise,
    semantic_drift,
)
from streams.logic.turns import TurnStats


def chat_turns(n: int, seed: int, drift: DriftInjection | None = None) -> list[dict]:
    cfg = SimulatorConfig(
        turns=n, rate=10, seed=seed, treatment_version=None, experiment_id=None, drift=drift
    )
    return [e for kind, e in TrafficSimulator(cfg).events() if kind == "ChatTurn"]


TOPIC = DriftInjection(at_s=0, kinds=("topic",))


def queries(turns: list[dict], k: int = 256) -> list[str]:
    s = QuerySample(k)
    for t in turns:
        s.add(t["event_id"], t["user_query"])
    return s.queries()


def test_identical_distributions_alarm_at_most_at_the_stated_rate() -> None:
    emb = HashedNgrams()
    pool = [t["user_query"] for t in chat_turns(4000, 1)]
    rng = random.Random(2)
    alarms = 0
    trials = 100
    for trial in range(trials):
        a, b = rng.sample(pool, 100), rng.sample(pool, 100)
        r = mmd_test(emb.embed(a), emb.embed(b), alpha=0.05, permutations=99, seed=trial)
        alarms += r.p_value < 0.05
    # 5 % expected; P(binomial(100, 0.05) > 12) < 0.001
    assert alarms <= 12, alarms


def test_a_new_topic_in_the_same_intents_is_detected_and_named() -> None:
    before = queries(chat_turns(3000, 3))
    after = queries(chat_turns(3000, 4, TOPIC))
    found = semantic_drift(before, after)
    assert found is not None and found.breached
    assert found.mmd.p_value < 0.01 and found.mmd.mmd2 > found.mmd.threshold
    top = found.topics[0]
    assert "electric" in top.label, top
    assert all("eléctric" in e or "híbrido" in e for e in top.examples), top.examples
    assert 0.15 < top.share < 0.5
    assert found.details["topic.1"].startswith(top.label)
    assert found.details["why.1"].startswith("new topic: ")


def test_no_new_topic_no_alarm_and_too_few_queries_no_verdict() -> None:
    found = semantic_drift(queries(chat_turns(3000, 5)), queries(chat_turns(3000, 6)))
    assert found is not None and not found.breached and found.topics == []
    assert semantic_drift(["a"] * 10, ["b"] * 10) is None


def test_emerging_topics_ignore_what_the_baseline_already_had() -> None:
    emb = HashedNgrams()
    base = [t["user_query"] for t in chat_turns(600, 7)]
    same = [t["user_query"] for t in chat_turns(300, 8)]
    assert emerging_topics(base, same, emb.embed(base), emb.embed(same)) == []


def test_the_query_sample_merges_like_one_pass_and_is_uniform_in_the_turn_id() -> None:
    turns = chat_turns(2000, 9)
    whole = QuerySample(256)
    for t in turns:
        whole.add(t["event_id"], t["user_query"])
    parts = [QuerySample(64) for _ in range(4)]
    for i, t in enumerate(turns):
        parts[i % 4].add(t["event_id"], t["user_query"])
    merged = QuerySample(64)
    for p in parts:
        merged.merge(QuerySample.from_list(p.to_list()), k=256)
    # each part keeps its 64 smallest; the union cut to 256 is still a hash-ordered sample
    assert len(merged.rows) == 256
    assert set(merged.rows) <= set(whole.rows) | {r for p in parts for r in p.rows}
    assert merged.rows == sorted(merged.rows)
    stats = TurnStats.of(turns)
    assert len(stats.queries.queries()) == 64  # one partial: SAMPLE_K


def test_normalisation_folds_accents_and_drops_placeholders() -> None:
    assert normalise("¿Eléctrico? Llame al <PHONE:1f3a9c2e>!") == "electrico llame al"


def test_the_streams_signal_fires_on_the_topic_and_intent_kl_does_not() -> None:
    hop = 20_000
    cfg = EvalConfig(
        window_ms=100_000,
        hop_ms=hop,
        freeze_after=500,
        drift=DriftThresholds(min_samples=100),
    )
    turns = chat_turns(4000, 11, DriftInjection(at_s=200, kinds=("topic",)))
    items = [("turn", t, 0, i) for i, t in enumerate(turns)]
    partials = list(Stage1Folder(hop).fold(items, lambda _k: None).values())
    out = evaluate_model("okla-v1.0", partials, None, {}, cfg)
    assert out["baseline"]["query_sample"]
    sig = [s for s in out["signals"] if s["signal"] == "semantic_drift"]
    late = [s for s in sig if s["window_start"] >= turns[0]["event_time"] + 200_000]
    assert late and all(s["breached"] for s in late)
    assert "electric" in late[-1]["details"]["topic.1"]
    kl = [s for s in out["signals"] if s["signal"] == "intent_distribution_shift"]
    assert kl and not any(s["breached"] for s in kl)
    alert = next(
        a
        for a in out["alerts"]
        if a["dedup_key"] == "drift:okla-v1.0:semantic_drift" and a["status"] != "RESOLVED"
    )
    assert "electric" in alert["details"]["why.1"]
    assert "summary" not in out or "query_sample" not in (out["summary"] or {})


@pytest.mark.parametrize("n", [0, 1])
def test_embedding_edge_cases(n: int) -> None:
    emb = HashedNgrams()
    assert emb.embed(["¿?"] * n).shape == (n, emb.dim)


def test_the_dashboard_picture_marks_the_new_topic() -> None:
    found = semantic_drift(queries(chat_turns(3000, 3)), queries(chat_turns(3000, 4, TOPIC)))
    assert found is not None
    view = found.view(123)
    assert view["window_end"] == 123 and view["breached"]
    assert len(view["baseline"]) == found.mmd.n_baseline
    assert len(view["window"]) == found.mmd.n_window
    marked = [p for p in view["window"] if p[2] == 1]
    assert len(marked) == found.topics[0].size
    assert view["topics"][0]["label"] == found.topics[0].label
