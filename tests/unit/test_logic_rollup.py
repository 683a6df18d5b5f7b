from __future__ import annotations

import random

from producers.simulator import SimulatorConfig, TrafficSimulator
from streams.logic.rollup import AB_FEEDBACK, AB_TURNS, TURNS, Stage1Folder, merge_slots, newer
from streams.logic.window import TurnStats

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
