"""Stage 2's pure decisions (streams.logic.groups) and stage 1's change events
(streams.logic.changes), without Faust or a broker."""

from __future__ import annotations

import math
import random
import zlib
from typing import Any

from continuum.demo.chat import DriftInjection, SimulatorConfig, TrafficSimulator
from streams.logic.alerts import AlertThresholds
from streams.logic.changes import ChangeWatch, change_events
from streams.logic.evaluation import EvalConfig
from streams.logic.groups import (
    GroupIndex,
    inputs_of,
    model_step,
    outbox_sends,
    should_evaluate,
)
from streams.logic.partials import Stage1Folder, slot_key

HOP = 10_000
CFG = EvalConfig(window_ms=20_000, hop_ms=HOP, freeze_after=500, source_partitions=6)


def part(kind: str = "turns", subject: str = "okla-v1.0|*", b: int = 0, g: str = "m:okla-v1.0"):
    return {"g": g, "k": kind, "s": subject, "b": b, "p": 0, "wm": 1, "v": {}}


def test_a_window_bucket_evaluates_only_when_it_moves_the_window_or_nothing_was_evaluated() -> None:
    fresh: dict[str, Any] = {}
    assert should_evaluate(fresh, part(b=5), baseline_known=False)
    seen = {"first_seen": 0, "evaluated_end": 50_000, "frozen_baseline": {}}
    assert should_evaluate(seen, part(b=60_000), baseline_known=False)
    assert not should_evaluate(seen, part(b=40_000), baseline_known=False)
    # Until a baseline exists, a late bucket may complete the turns to freeze.
    unfrozen = {"first_seen": 0, "evaluated_end": 50_000}
    assert should_evaluate(unfrozen, part(b=40_000), baseline_known=False)
    assert not should_evaluate(unfrozen, part(b=40_000), baseline_known=True)
    # One variant's window never triggers: the all-variants partial of the same bucket does.
    assert not should_evaluate(fresh, part(subject="okla-v1.0|A", b=5), baseline_known=False)


def test_feedback_re_evaluates_only_a_group_evaluated_before() -> None:
    fb = part(kind="fb", subject="okla-v1.0")
    assert not should_evaluate({}, fb, baseline_known=False)
    assert should_evaluate({"first_seen": 0}, fb, baseline_known=False)
    # A predictive model's window is its predictions: a turns partial there is "other".
    assert should_evaluate({"first_seen": 0}, part(kind="pred", g="p:xgb", b=1), False)
    assert not should_evaluate({}, part(kind="out", subject="xgb", g="p:xgb"), False)


def _partials(turns: int, drift: bool) -> list[dict[str, Any]]:
    sim = SimulatorConfig(
        turns=turns,
        rate=100,
        seed=7,
        feedback_probability=0,
        drift=DriftInjection(at_s=60, kinds=("latency",)) if drift else None,
    )
    items, offsets = [], [0] * 6
    for schema, ev in TrafficSimulator(sim).events():
        if schema != "ChatTurn" or ev["model_version"] != "okla-v1.0":
            continue
        p = zlib.crc32(ev["session_id"].encode()) % 6
        items.append(("turn", ev, p, offsets[p]))
        offsets[p] += 1
    folded = Stage1Folder(HOP).fold(items, {}.get)
    return [v for v in folded.values() if v["g"] == "m:okla-v1.0"]


def test_a_model_step_sends_in_order_keeps_decisions_and_forgets_old_buckets() -> None:
    """Nothing is forgotten before a baseline exists: every bucket may be part of it."""
    partials = _partials(9000, drift=False)
    first = model_step("m:okla-v1.0", partials, {}, CFG)
    schemas = [s for s, _, _ in first.sends]
    assert schemas[0] == "Baseline" and first.state["frozen_baseline"]["model_version"]
    assert ("Alert", "alert-requests") in {(s, t) for s, _, t in first.sends}
    assert first.state["outbox"] and all(s == "Alert" for s, _ in first.state["outbox"])
    assert first.state["last_window"] is not None
    # Forgetting starts once a baseline exists: buckets older than the retention horizon.
    horizon = first.state["evaluated_end"] - CFG.retention_ms
    expect = {slot_key(p["k"], p["s"], p["b"], p["p"]) for p in partials if p["b"] < horizon}
    assert expect and set(first.forget) == expect
    none_yet = model_step("m:okla-v1.0", partials[:3], {}, CFG)
    assert none_yet.forget == [] and "frozen_baseline" not in none_yet.state


def _close(a: Any, b: Any) -> bool:
    """Equal, floats up to rounding (sums merged in another order differ in the last bits)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_the_same_inputs_give_the_same_step_whatever_their_order() -> None:
    """Partials come out of the table in any order (a restart restores them in changelog
    order): the decisions, their ids and the state do not depend on it."""
    partials = _partials(3000, drift=True)
    shuffled = list(partials)
    random.Random(1).shuffle(shuffled)
    a = model_step("m:okla-v1.0", partials, {}, CFG)
    b = model_step("m:okla-v1.0", shuffled, {}, CFG)
    assert [(s, e["event_id"], t) for s, e, t in a.sends] == [
        (s, e["event_id"], t) for s, e, t in b.sends
    ]
    assert _close(a.sends, b.sends) and _close(a.state, b.state)
    assert set(a.forget) == set(b.forget)


def test_the_outbox_is_sent_again_with_alert_requests_marked_replayed() -> None:
    alert = {"event_id": "a1", "details": {"k": "v"}}
    trigger = {"event_id": "t1"}
    sends = outbox_sends({"outbox": [("Alert", alert), ("RetrainTrigger", trigger)]})
    assert sends == [
        ("Alert", {"event_id": "a1", "details": {"k": "v", "replayed": "1"}}, "alert-requests"),
        ("RetrainTrigger", trigger, None),
    ]
    assert alert["details"] == {"k": "v"}  # the kept event is not changed
    assert outbox_sends({}) == []


def test_the_group_index_follows_adds_moves_and_deletes_and_rebuilds_from_a_table() -> None:
    idx = GroupIndex()
    idx.add("a", "m:x")
    idx.add("b", "m:x")
    idx.add("c", "x:e")
    idx.add("a", "m:x")  # again: no change
    assert idx.keys("m:x") == ["a", "b"] and len(idx) == 3
    idx.add("b", "x:e")  # a key that moved group
    assert idx.keys("m:x") == ["a"] and idx.keys("x:e") == ["b", "c"]
    idx.discard("a")
    idx.discard("zz")
    assert idx.groups() == ["x:e"] and len(idx) == 2
    idx.rebuild([("k1", {"g": "p:m"}), ("k2", {"g": "p:m"})])
    assert idx.groups() == ["p:m"] and idx.keys("p:m") == ["k1", "k2"]
    assert inputs_of([{"wm": 3}, {"wm": 4}]) == [2, 7]


def test_a_change_point_gives_one_signal_and_one_alert_request_with_ids_from_its_inputs() -> None:
    rng = random.Random(3)

    def run() -> list[tuple[str, dict[str, Any], str | None]]:
        watch = ChangeWatch()
        for i in range(1200):
            latency = rng.gauss(800 if i < 600 else 4000, 50)
            turn = {"model_version": "m1", "latency_ms": latency, "event_time": 1000 * i}
            watch.watch(turn, 2, "turn")
        return change_events(watch.drain(), AlertThresholds())

    rng.seed(3)
    first = run()
    rng.seed(3)
    again = run()
    assert first and [e["event_id"] for _, e, _ in first] == [e["event_id"] for _, e, _ in again]
    signals = [e for s, e, t in first if s == "DriftSignal" and t is None]
    requests = [e for s, e, t in first if s == "Alert" and t == "alert-requests"]
    assert len(signals) == len(requests) >= 1
    assert signals[0]["signal"] == "change_point" and signals[0]["details"]["direction"] == "up"
    assert signals[0]["window_end"] >= 600_000


def test_a_revoked_partition_forgets_its_detectors() -> None:
    watch = ChangeWatch()
    for p in (0, 1):
        watch.watch({"model_version": "m", "latency_ms": 5.0, "event_time": 0}, p, "turn")
    watch.watch(
        {"model_version": "m", "latency_ms": 5.0, "confidence": 0.9, "event_time": 0},
        1,
        "prediction",
    )
    watch.forget("turn", 1)
    assert sorted(watch.detectors) == [
        ("prediction", 1, "m", "confidence"),
        ("prediction", 1, "m", "latency_ms"),
        ("turn", 0, "m", "latency_ms"),
    ]
