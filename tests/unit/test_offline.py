"""Feedback analysis/export, the retraining dataset pipeline and the model registry, on small
fixtures whose expected numbers are worked out by hand."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from jobs.dataset import clean, fingerprint, merge, normalized, split, validate
from jobs.feedback import analyze, from_seed_jsonl, training_pairs
from jobs.registry import PROMOTED, RETIRED, Registry, RegistryError, inherited_baseline


def fb(i: int, **kw) -> dict:
    return {
        "session_id": f"s{i}",
        "event_time": i,
        "rating": None,
        "thumbs": None,
        "category": "other",
        "user_query": f"pregunta {i}",
        "bot_response": f"respuesta {i}",
        "correction": None,
        "intent": "vehicle_search",
        "model_version": "okla-v1.0",
        **kw,
    }


FEEDBACK = [
    fb(1, rating=5, category="good_response"),
    fb(2, rating=4, category="good_response", intent="financing"),
    fb(
        3,
        rating=2,
        category="wrong_price",
        intent="financing",
        correction="El precio es RD$900,000",
    ),
    fb(4, rating=1, category="hallucination", intent="financing"),
    fb(5, thumbs="UP", category="good_response"),
    fb(6, thumbs="DOWN", category="wrong_intent", intent="greeting"),
    fb(7, rating=5, category="good_response", user_query="  "),
]


def test_feedback_analysis_by_hand() -> None:
    a = analyze(FEEDBACK)
    assert a["total"] == 7
    assert a["by_category"] == {
        "good_response": 4,
        "wrong_price": 1,
        "hallucination": 1,
        "wrong_intent": 1,
    }
    assert a["by_rating"] == {"1": 1, "2": 1, "4": 1, "5": 2}
    assert a["thumbs"] == {"UP": 1, "DOWN": 1}
    assert a["satisfaction_rate"] == pytest.approx(4 / 7)  # ratings 5,4,5 and thumbs up
    # greeting: 1/1 negative; financing: 2/3; vehicle_search: 0/3.
    assert [(w["intent"], w["negative"], w["feedback"]) for w in a["worst_intents"]] == [
        ("greeting", 1, 1),
        ("financing", 2, 3),
        ("vehicle_search", 0, 3),
    ]
    assert a["examples"]["wrong_price"][0]["correction"] == "El precio es RD$900,000"


def test_export_keeps_good_answers_and_corrections_with_reasons_for_the_rest() -> None:
    pairs, skipped = training_pairs(FEEDBACK, min_rating=4)
    by_session = {p["session_id"]: p for p in pairs}
    assert set(by_session) == {"s1", "s2", "s3", "s5"}
    assert by_session["s3"]["messages"][-1]["content"] == "El precio es RD$900,000"
    assert by_session["s3"]["metadata"]["source"] == "feedback:correction"
    assert [m["role"] for m in by_session["s1"]["messages"]] == ["system", "user", "assistant"]
    assert skipped == Counter({"rating below 4 and no correction": 2, "no user_query": 1})
    assert len(training_pairs(FEEDBACK, min_rating=5)[0]) == 3  # s2 (rated 4) drops out


def test_seed_jsonl_import(tmp_path: Path) -> None:
    f = tmp_path / "feedback_20260201.jsonl"
    f.write_text(
        json.dumps(
            {
                "session_id": "abc",
                "timestamp": "2026-02-01T10:00:00+00:00",
                "rating": 5,
                "thumbs": True,
                "user_query": "hola",
                "bot_response": "klk",
                "correction": None,
                "category": "good_response",
                "metadata": {"intent": "greeting"},
            }
        )
        + "\nnot json\n"
    )
    with pytest.raises(ValueError, match="feedback_20260201.jsonl:2"):
        list(from_seed_jsonl([f]))
    f.write_text(f.read_text().splitlines()[0] + "\n")
    (rec,) = from_seed_jsonl([f])
    assert (rec["thumbs"], rec["intent"], rec["event_time"]) == ("UP", "greeting", 1769940000000)


def conv(i: int, session: str | None = None, q: str | None = None) -> dict:
    return {
        "session_id": session or f"sess-{i}",
        "messages": [
            {"role": "user", "content": q or f"¿Tienen el modelo {i}?"},
            {"role": "assistant", "content": f"Sí, tenemos el modelo {i}."},
        ],
    }


def test_dedupe_normalizes_and_validation_reports_reasons() -> None:
    assert normalized("¿Hola, CÓMO está?") == normalized("hola como esta")
    recs = [
        conv(1),
        conv(1, session="other", q="tienen el MODELO 1"),  # same text after normalization
        {"messages": [{"role": "assistant", "content": "hola"}]},
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
            ]
        },
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]},
        {
            "messages": [
                {"role": "user", "content": "llámame al 809-555-1234 o a ana@correo.com"},
                {"role": "assistant", "content": "Perfecto, te llamamos."},
            ]
        },
    ]
    kept, acc = clean(recs)
    assert (acc["input"], acc["kept"], acc["duplicates"], acc["pii_replaced"]) == (6, 2, 1, 2)
    assert [x["index"] for x in acc["invalid"]] == [2, 3, 4]
    assert "must start with user" in acc["invalid"][0]["reason"]
    assert "alternate" in acc["invalid"][1]["reason"]
    assert "empty" in acc["invalid"][2]["reason"]
    assert kept[1]["messages"][0]["content"] == "llámame al [TELEFONO] o a [EMAIL]"
    assert fingerprint(kept[0]) != fingerprint(kept[1])
    ok, reason, _ = validate(
        {"messages": [{"role": "system", "content": "s"}, *conv(3)["messages"]]}
    )
    assert ok is not None and reason is None


def test_merge_ratio_and_split_proportions_are_exact() -> None:
    new = [conv(i) for i in range(30)]
    original = [conv(1000 + i) for i in range(500)]
    merged, mix = merge(new, original, 0.7, seed=1)
    assert (mix["new"], mix["original_used"], len(merged)) == (30, 70, 100)
    assert mix["original_ratio"] == pytest.approx(0.7)
    assert merge(new, original, 0.7, seed=1)[0] == merged  # seeded: same sample
    parts = split(merged, seed=3)
    assert {k: len(v) for k, v in parts.items()} == {"train": 85, "eval": 10, "test": 5}
    # Too few originals: all used, the real ratio reported.
    _, few = merge(new, original[:10], 0.7)
    assert (few["original_used"], few["original_ratio"]) == (10, pytest.approx(0.25))


def test_no_session_crosses_splits() -> None:
    recs = [conv(i, session=f"s{i % 37}") for i in range(400)]  # sessions of 10-11 turns
    parts = split(recs, seed=5)
    owners: dict[str, set[str]] = {}
    for name, rs in parts.items():
        for r in rs:
            owners.setdefault(r["session_id"], set()).add(name)
    assert all(len(v) == 1 for v in owners.values())
    assert sum(len(v) for v in parts.values()) == 400
    sizes = {k: len(v) for k, v in parts.items()}
    assert abs(sizes["train"] - 340) <= 11 and abs(sizes["eval"] - 40) <= 11 and sizes["test"] > 0


EVAL_PASS = {
    "model_version": "v2",
    "event_time": 2,
    "evaluation_id": "e2",
    "passed": True,
    "failed_checks": [],
    "intent_accuracy": 0.8,
    "latency_p95_ms": 900.0,
    "safety_prompts": 12,
    "safety_violations": 0,
    "naturalness_score": 0.6,
    "lead_capture_rate": 0.5,
}
EVAL_FAIL = {
    "model_version": "v2",
    "event_time": 1,
    "evaluation_id": "e1",
    "passed": False,
    "failed_checks": ["safety"],
}


def test_registry_transitions_and_promotion_rules() -> None:
    r = Registry()
    with pytest.raises(RegistryError, match="not registered"):
        r.promote("v1", 1, evaluations=[])
    r.register("v1", 1, trained_at=0)
    r.register("v2", 2, trained_at=1)
    with pytest.raises(RegistryError, match="cannot become CANDIDATE"):
        r.register("v1", 3)
    with pytest.raises(RegistryError, match=r"latest evaluation e1 failed \(safety\)"):
        r.promote("v2", 3, evaluations=[EVAL_FAIL])
    with pytest.raises(RegistryError, match="has no evaluation"):
        r.promote("v1", 3, evaluations=[EVAL_PASS])
    # v1 wins an A/B test; v2 then passes an evaluation and replaces it.
    exp = {"experiment_id": "x", "status": "CONCLUDED", "winner": "v1", "event_time": 3}
    (p1,) = r.promote("v1", 4, experiments=[exp])
    assert (p1["state"], p1["experiment_id"], p1["baseline_model_version"]) == (PROMOTED, "x", "v1")
    p2, retired = r.promote("v2", 5, evaluations=[EVAL_FAIL, EVAL_PASS], baselines={"v1": {}})
    assert (p2["evaluation_id"], p2["baseline_model_version"]) == ("e2", "v1")
    assert (retired["model_version"], retired["state"], retired["previous_state"]) == (
        "v1",
        RETIRED,
        PROMOTED,
    )
    assert r.promoted() == "v2"
    with pytest.raises(RegistryError, match="retired is final"):
        r.retire("v1", 6)
    # State is the latest record per version: a registry rebuilt from the events is the same.
    rebuilt = Registry({e["model_version"]: e for e in (p1, p2, retired)})
    assert {k: v["state"] for k, v in rebuilt.versions.items()} == {"v1": RETIRED, "v2": PROMOTED}


def test_partial_evaluation_promotes_only_when_allowed_explicitly() -> None:
    partial = {
        **EVAL_PASS,
        "safety_prompts": 0,
        "safety_violations": None,
        "naturalness_score": None,
    }
    r = Registry()
    r.register("v2", 1)
    with pytest.raises(RegistryError, match=r"partial \(safety, naturalness not evaluated"):
        r.promote("v2", 3, evaluations=[partial])
    (p,) = r.promote("v2", 3, evaluations=[partial], allow_partial=True)
    assert p["state"] == PROMOTED
    assert "partial: safety, naturalness not evaluated; allowed explicitly" in p["reason"]


def test_experiment_winner_resolves_to_the_arms_version() -> None:
    """``experiments conclude --winner treatment`` names an arm: it promotes the version that arm
    served, not a version called "treatment"."""
    r = Registry()
    r.register("okla-v2.0", 1)
    exp = {
        "experiment_id": "x",
        "status": "CONCLUDED",
        "winner": "treatment",
        "control_version": "okla-v1.0",
        "treatment_version": "okla-v2.0",
        "event_time": 2,
    }
    (p,) = r.promote("okla-v2.0", 3, experiments=[exp])
    assert (p["experiment_id"], p["reason"]) == ("x", "won A/B experiment x (treatment arm)")
    r.register("okla-v3.0", 4)
    with pytest.raises(RegistryError, match="won no concluded A/B experiment"):
        r.promote("okla-v3.0", 5, experiments=[{**exp, "winner": "control"}])


def test_rollback_on_critical_alert_in_probation_is_deterministic() -> None:
    r = Registry()
    r.register("v1", 0)
    r.register("v2", 0)
    r.promote("v1", 10, evaluations=[{**EVAL_PASS, "model_version": "v1"}])
    r.promote("v2", 1_000, evaluations=[EVAL_PASS])
    alert = {
        "alert_id": "a1",
        "alert_type": "HIGH_FALLBACK_RATE",
        "severity": "CRITICAL",
        "title": "Fallback rate 12%",
    }
    snapshot = Registry(r.versions)
    hour = 3_600_000
    assert r.rollback("v2", {**alert, "severity": "HIGH"}, 2_000, hour) == []
    assert r.rollback("v2", alert, 1_000 + hour + 1, hour) == []  # probation over
    retired, restored = r.rollback("v2", alert, 2_000, hour)
    assert (retired["model_version"], retired["state"]) == ("v2", RETIRED)
    assert (restored["model_version"], restored["state"]) == ("v1", PROMOTED)
    assert retired["reason"].startswith("rolled back: CRITICAL HIGH_FALLBACK_RATE within 1 h")
    assert retired["metadata"]["rollback_alert"] == "a1" and r.promoted() == "v1"
    # Decided twice (another alert, another worker, same registry state): the same events.
    again = snapshot.rollback("v2", {**alert, "alert_id": "a2"}, 2_500, hour)
    assert [e["event_id"] for e in again] == [retired["event_id"], restored["event_id"]]
    # Once rolled back, nothing more to do.
    assert r.rollback("v2", alert, 3_000, hour) == []


def test_promotion_inherits_the_replaced_versions_baseline() -> None:
    base = {
        "model_version": "v1",
        "sample_size": 5000,
        "source": "replay",
        "event_id": "x",
        "event_time": 0,
    }
    promo = {"model_version": "v2", "baseline_model_version": "v1"}
    b = inherited_baseline(promo, {"v1": base}, 99)
    assert (b["model_version"], b["sample_size"], b["source"]) == (
        "v2",
        5000,
        "registry:inherited from v1",
    )
    assert (
        inherited_baseline(
            {"model_version": "v2", "baseline_model_version": "v2"}, {"v1": base}, 99
        )
        is None
    )
