"""Judge scores in the streams: folded exactly once per turn, a judged-quality signal against the
judge baseline with the worst examples and the intents that dropped, and a fifth A/B metric."""

from __future__ import annotations

import random
import uuid

import pytest

from schemas.ids import stable_id
from streams.logic.abtest import ArmTally, analyze
from streams.logic.drift import DriftThresholds
from streams.logic.evaluation import EvalConfig, evaluate_model
from streams.logic.judge import JudgeTally
from streams.logic.partials import JUDGE_BUCKETS, Stage1Folder, merge_slots

T0 = 1_767_225_600_000
INTENTS = ("vehicle_search", "financing", "price_inquiry")


def traffic(
    n: int, drop_after_s: int | None = None, seed: int = 1
) -> list[tuple[str, dict, int, int]]:
    """Turns at 1/s and a judge score for every other turn; after ``drop_after_s`` the judge
    scores financing answers low."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        intent = INTENTS[i % 3]
        tid = str(uuid.UUID(int=i + 1))
        t = {
            "event_id": tid,
            "event_time": T0 + i * 1000,
            "session_id": f"s{i // 4}",
            "turn_index": i % 4,
            "model_version": "m1",
            "intent": intent,
            "confidence": rng.uniform(0.8, 0.95),
            "is_fallback": False,
            "latency_ms": rng.lognormvariate(7, 0.2),
            "prompt_tokens": 100,
            "completion_tokens": 40,
            "metadata": {},
        }
        items.append(("turn", t, 0, i))
        if i % 2 == 0:
            bad = drop_after_s is not None and i >= drop_after_s and intent == "financing"
            score = rng.uniform(0.1, 0.3) if bad else rng.uniform(0.7, 0.9)
            items.append(
                (
                    "judge",
                    {
                        "event_id": stable_id("judge", tid),
                        "event_time": t["event_time"],
                        "turn_id": tid,
                        "session_id": t["session_id"],
                        "model_version": "m1",
                        "intent": intent,
                        "status": "ok",
                        "score": score,
                        "reason": "no responde la tasa" if bad else "bien",
                    },
                    0,
                    i,
                )
            )
    return items


CFG = EvalConfig(
    window_ms=600_000,
    hop_ms=60_000,
    freeze_after=300,
    drift=DriftThresholds(min_samples=100, judge_min_samples=30),
)


def run(items: list) -> tuple[list[dict], dict]:
    folder = Stage1Folder(CFG.hop_ms)
    partials = list(folder.fold(items, lambda _k: None).values())
    out = evaluate_model("m1", partials, None, {}, CFG)
    baseline = out["baseline"]
    assert baseline is not None
    signals = [s for s in out["signals"] if s["signal"] == "judged_quality_drop"]
    return signals, out


def test_a_judged_drop_in_one_intent_is_signalled_with_examples_and_the_intent() -> None:
    signals, out = run(traffic(2400, drop_after_s=1200))
    assert signals, "judge signals once the judge baseline exists"
    before = [s for s in signals if s["window_end"] <= T0 + 1_200_000]
    after = [s for s in signals if s["window_start"] >= T0 + 1_200_000]
    assert before and not any(s["breached"] for s in before)
    assert after and all(s["breached"] for s in after)
    last = after[-1]
    assert last["threshold"] == -0.10 and last["change"] < -0.2
    assert last["details"]["why.1"].startswith("intent=financing: -")
    assert "no responde la tasa" in last["details"]["worst.1"]
    assert "financing" in last["details"]["worst.1"]
    alert = next(
        a
        for a in out["alerts"]
        if a["dedup_key"] == "drift:m1:judged_quality_drop" and a["status"] != "RESOLVED"
    )
    assert alert["alert_type"] == "PERFORMANCE_DEGRADATION"
    assert "no responde la tasa" in alert["details"]["worst.1"]
    assert out["state"]["judge_baseline"]["source"] == "baseline period"


def test_steady_judge_scores_never_breach() -> None:
    signals, _ = run(traffic(2400))
    assert signals and not any(s["breached"] for s in signals)


def test_a_redelivered_score_is_folded_once() -> None:
    items = traffic(200)
    folder = Stage1Folder(CFG.hop_ms)
    stored: dict = {}
    for batch in (items[:150], items[100:]):  # overlap: a replay after a crash
        stored.update(folder.fold(batch, stored.get))
    tally = merge_slots(list(stored.values()), JUDGE_BUCKETS, "m1")
    assert isinstance(tally, JudgeTally) and tally.ok == 100


def test_worst_examples_merge_like_one_pass() -> None:
    rng = random.Random(3)
    events = [
        {"status": "ok", "score": rng.random(), "turn_id": f"t{i}", "intent": "x", "reason": ""}
        for i in range(200)
    ]
    whole = JudgeTally()
    for e in events:
        whole.update(e)
    a, b = JudgeTally(), JudgeTally()
    for e in events[:77]:
        a.update(e)
    for e in events[77:]:
        b.update(e)
    merged = JudgeTally.from_dict(a.to_dict()).merge(b)
    assert merged.worst == whole.worst and merged.ok == 200
    assert [r[0] for r in whole.worst] == sorted(e["score"] for e in events)[:5]


def test_unparseable_and_failed_scores_are_counted_not_averaged() -> None:
    t = JudgeTally()
    t.update({"status": "ok", "score": 0.5, "turn_id": "a"})
    t.update({"status": "unparseable", "score": None, "turn_id": "b"})
    t.update({"status": "failed", "score": None, "turn_id": "c", "pii_in_answer": True})
    s = t.summary()
    assert (s["scored"], s["unparseable"], s["failed"], s["pii_in_answer"]) == (1, 1, 1, 1)
    assert s["score_mean"] == 0.5 and s["unparseable_rate"] == pytest.approx(1 / 3)


def test_judge_score_is_a_fifth_ab_metric_at_the_session_level_without_a_vote() -> None:
    rng = random.Random(5)
    arms = {"control": ArmTally(), "treatment": ArmTally()}
    for arm, mean in (("control", 0.6), ("treatment", 0.7)):
        for i in range(800):
            arms[arm].update_turn(
                {"session_id": f"{arm}{i // 3}", "turn_index": i % 3, "latency_ms": 1000.0}
            )
            arms[arm].update_judge(
                {"status": "ok", "score": rng.gauss(mean, 0.1), "session_id": f"{arm}{i // 3}"}
            )
        arms[arm].update_judge({"status": "unparseable", "score": None, "session_id": "x"})
    result = analyze(arms["control"], arms["treatment"])
    judge = next(t for t in result["tests"] if t["metric"] == "judge_score")
    assert judge["unit"] == "session" and judge["significant"] and judge["better"] == "treatment"
    assert result["treatment"]["judged"] == 800
    assert result["treatment"]["judge_score_mean"] == pytest.approx(0.7, abs=0.01)
    assert "judge_score" in result["sequential"]
    assert result["scores"] == {"control": 0, "treatment": 0}  # it informs, it does not vote


def test_an_experiments_arms_carry_their_judge_scores_and_session_satisfaction() -> None:
    from streams.logic.evaluation import evaluate_experiment

    items = []
    for i in range(120):
        arm = ("control", "treatment")[i % 2]
        sid = f"s{i}"
        common = {"session_id": sid, "experiment_id": "e1", "variant": arm, "model_version": arm}
        items.append(
            (
                "turn",
                {
                    **common,
                    "event_id": f"t{i}",
                    "event_time": T0 + i,
                    "turn_index": 0,
                    "latency_ms": 900.0,
                },
                0,
                i,
            )
        )
        items.append(
            (
                "judge",
                {
                    **common,
                    "event_id": f"j{i}",
                    "event_time": T0 + i,
                    "turn_id": f"t{i}",
                    "status": "ok",
                    "score": 0.5,
                },
                0,
                i,
            )
        )
        items.append(
            ("feedback", {**common, "event_id": f"f{i}", "event_time": T0 + i, "rating": 5}, 0, i)
        )
    partials = list(Stage1Folder(CFG.hop_ms).fold(items, lambda _k: None).values())
    result = evaluate_experiment({"experiment_id": "e1"}, partials, {})
    assert result["control"]["judged"] == 60 and result["treatment"]["judge_score_mean"] == 0.5
    sat = next(t for t in result["tests"] if t["metric"] == "satisfaction")
    assert sat["unit"] == "session"  # feedback's session buckets reach the analysis
