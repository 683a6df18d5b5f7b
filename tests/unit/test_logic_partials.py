from __future__ import annotations

import random

import pytest

from continuum.demo.chat import SimulatorConfig, TrafficSimulator
from streams.logic.partials import AB_FEEDBACK, AB_TURNS, TURNS, Stage1Folder, merge_slots, newer
from streams.logic.turns import TurnStats

HOP = 10_000


def _stream(turns: int = 2000) -> list[tuple[str, dict]]:
    return list(TrafficSimulator(SimulatorConfig(turns=turns, rate=100)).events())


def _run_stage1(
    events: list[tuple[str, dict]], partitions: int, batches: list[int], crash_replay: bool
) -> dict:
    """Events spread over partitions by session; folded in batches; optionally each batch is
    folded twice (a replay after a crash before the offset commit)."""
    table: dict[str, dict] = {}
    stage2: dict[str, dict] = {}
    offsets = [0] * partitions
    items = []
    for schema, ev in events:
        p = hash(ev["session_id"]) % partitions
        items.append(("turn" if schema == "ChatTurn" else "feedback", ev, p, offsets[p]))
        offsets[p] += 1
    folder = Stage1Folder(HOP)
    i = 0
    for size in batches:
        batch = items[i : i + size]
        i += size
        for _ in range(2 if crash_replay else 1):
            out = folder.fold(batch, table.get)
            table.update(out)
            for key, part in out.items():
                if newer(stage2.get(key), part):
                    stage2[key] = part
    assert i >= len(items)
    return stage2


def test_two_stage_totals_equal_a_direct_count_even_with_replays() -> None:
    events = _stream()
    turns = [e for s, e in events if s == "ChatTurn"]
    direct = TurnStats.of(t for t in turns if t["model_version"] == "okla-v1.0")
    rng = random.Random(1)
    sizes = [rng.randint(1, 300) for _ in range(100)]
    for partitions in (1, 3, 6):
        for replay in (False, True):
            stage2 = _run_stage1(events, partitions, sizes, replay)
            merged = merge_slots(stage2.values(), TURNS, "okla-v1.0|*")
            assert merged.n == direct.n
            assert merged.to_dict()["int"] == direct.to_dict()["int"]
            assert merged.latency.to_dict() == direct.latency.to_dict()
            arm = merge_slots(stage2.values(), AB_TURNS, "v1-vs-v2|control")
            fb = merge_slots(stage2.values(), AB_FEEDBACK, "v1-vs-v2|control")
            assert arm.n == sum(1 for t in turns if t["variant"] == "control")
            assert fb.feedback == sum(
                1 for s, e in events if s == "Feedback" and e["variant"] == "control"
            )


def test_window_selects_buckets() -> None:
    stage2 = _run_stage1(_stream(3000), 2, [1000] * 5, False)
    t0 = 1_767_225_600_000
    first = merge_slots(stage2.values(), TURNS, "okla-v1.0|*", t0, t0 + HOP)
    total = merge_slots(stage2.values(), TURNS, "okla-v1.0|*")
    assert 0 < first.n < total.n


def test_stale_snapshot_never_replaces_newer() -> None:
    assert newer(None, {"wm": 0})
    assert newer({"wm": 5}, {"wm": 5}) and not newer({"wm": 6}, {"wm": 5})


def test_window_end_is_the_bucket_every_partition_reached_or_the_grace() -> None:
    from streams.logic.evaluation import GRACE_HOPS, window_end

    def parts(newest: dict[int, int]) -> list[dict]:
        return [
            {"k": TURNS, "s": "m|*", "b": b, "p": p}
            for p, top in newest.items()
            for b in range(0, top + 1, HOP)
        ]

    # Three partitions at buckets 5, 3 and 4 (in hops): buckets before 3 are complete.
    assert window_end(parts({0: 5 * HOP, 1: 3 * HOP, 2: 4 * HOP}), "m|*", HOP, 3) == 3 * HOP
    # One partition far behind (or silent) holds the window back at most the grace.
    lagging = parts({0: 9 * HOP, 1: 1 * HOP, 2: 9 * HOP})
    assert window_end(lagging, "m|*", HOP, 3) == (9 - GRACE_HOPS) * HOP
    # A partition not heard from yet counts as behind.
    assert window_end(parts({0: 5 * HOP, 1: 5 * HOP}), "m|*", HOP, 3) == (5 - GRACE_HOPS) * HOP
    assert window_end([], "m|*", HOP, 3) is None


def test_every_window_is_evaluated_once_whatever_the_batch_size() -> None:
    """One big fold (a backlog in one batch) and many small ones give the same windows, each
    evaluated once, in order; a long gap is caught up to MAX_CATCH_UP windows."""
    from streams.logic.evaluation import MAX_CATCH_UP, EvalConfig, evaluate_model, windows_due

    assert windows_due(0, None, 4 * HOP, HOP) == [HOP, 2 * HOP, 3 * HOP, 4 * HOP]
    assert windows_due(0, 2 * HOP, 4 * HOP, HOP) == [3 * HOP, 4 * HOP]
    assert windows_due(0, 4 * HOP, 4 * HOP, HOP) == []
    far = windows_due(0, HOP, (MAX_CATCH_UP + 50) * HOP, HOP)
    assert len(far) == MAX_CATCH_UP and far[-1] == (MAX_CATCH_UP + 50) * HOP

    hop = 1000
    cfg = EvalConfig(window_ms=4 * hop, hop_ms=hop, freeze_after=200, source_partitions=1)
    turns = [e for s, e in _stream(3000) if s == "ChatTurn"]  # 30 s at 100 turns/s

    def signal_ends(batch: int) -> list[int]:
        folder, slots, state, ends = Stage1Folder(hop), {}, {}, []
        baseline = None
        for i in range(0, len(turns), batch):
            items = [("turn", t, 0, i + j) for j, t in enumerate(turns[i : i + batch])]
            slots.update(folder.fold(items, slots.get))
            out = evaluate_model("okla-v1.0", list(slots.values()), baseline, state, cfg)
            baseline = baseline or out["baseline"]
            state = out["state"]
            ends += sorted({s["window_end"] for s in out["signals"]})
        return ends

    small, big = signal_ends(100), signal_ends(3000)
    assert small == big and len(small) == len(set(small)) >= 20
    assert small == list(range(small[0], small[-1] + hop, hop))  # every hop, in order


def test_closed_turn_buckets_are_not_folded_and_expire() -> None:
    folder = Stage1Folder(HOP, retention_ms=3 * HOP)
    turn = dict(_stream(5)[0][1])
    store: dict[str, dict] = {}
    for offset, t in enumerate((0, 5 * HOP, HOP)):  # the last is 4 hops late
        store.update(folder.fold([("turn", dict(turn, event_time=t), 0, offset)], store.get))
    assert folder.late == 1 and folder.horizon(0) == 2 * HOP
    expired = folder.expired(store.items())
    assert expired and all(store[k]["b"] == 0 for k in expired)
    assert not [p for p in store.values() if p["k"] == TURNS and p["b"] == HOP]
    with pytest.raises(ValueError, match="retention"):
        Stage1Folder(HOP, retention_ms=HOP - 1)


def test_performance_is_compared_with_the_period_before_not_the_overlapping_window() -> None:
    """1 s hops, 4 s windows, confidence falling by 0.25 from 20 s on: the window [20 s, 24 s)
    against [16 s, 20 s) shows the whole drop (the window one hop back shares 3 s of data with
    it and would show a quarter)."""
    from continuum.demo.chat import DriftInjection
    from streams.logic.evaluation import EvalConfig, evaluate_model

    hop, start = 1000, SimulatorConfig().start_ms
    cfg = EvalConfig(window_ms=4 * hop, hop_ms=hop, freeze_after=300, source_partitions=1)
    sim = SimulatorConfig(
        turns=3000, rate=100, drift=DriftInjection(at_s=20, kinds=("confidence",))
    )
    turns = [e for s, e in TrafficSimulator(sim).events() if s == "ChatTurn"]
    folder, slots, state, baseline, perf = Stage1Folder(hop), {}, {}, None, {}
    for i in range(0, len(turns), 200):
        items = [("turn", t, 0, i + j) for j, t in enumerate(turns[i : i + 200])]
        slots.update(folder.fold(items, slots.get))
        out = evaluate_model("okla-v1.0", list(slots.values()), baseline, state, cfg)
        baseline, state = baseline or out["baseline"], out["state"]
        for sig in out["signals"]:
            if sig["signal"] == "performance_degradation":
                perf[sig["window_start"] - start] = sig
    assert perf[20_000]["breached"] and perf[20_000]["change"] < -0.2
    assert perf[20_000]["baseline"] > perf[16_000]["value"] * 0.99  # the period before: clean
    # Both periods on the same side of the change: nothing to report.
    assert not [k for k, s in perf.items() if s["breached"] and not 17_000 <= k < 24_000]
    assert any(k >= 24_000 for k in perf)
    assert len(state["periods"]) <= 5  # only what later windows may still compare with


def test_every_state_class_is_mergeable_and_partials_have_the_documented_keys() -> None:
    from typing import get_type_hints

    from streams.logic.partials import _STATE_CLASSES, Mergeable, Partial

    for kind, cls in _STATE_CLASSES.items():
        st = cls()
        assert isinstance(st, Mergeable), kind
        assert cls.from_dict(st.to_dict()).to_dict() == st.to_dict(), kind
    events = _stream(50)
    items = [
        ("turn" if schema == "ChatTurn" else "feedback", ev, 0, i)
        for i, (schema, ev) in enumerate(events)
    ]
    parts = Stage1Folder(HOP).fold(items, {}.get)
    assert parts
    for part in parts.values():
        assert set(part) == set(get_type_hints(Partial)), part
