"""Replay and archive without a broker: archive files written by hand, the same TurnStats."""

from __future__ import annotations

import fastavro
import pytest

from continuum.demo.chat import SimulatorConfig, TrafficSimulator
from jobs.archive import PartitionState, archive_files, day_of, read_archive
from jobs.replay import BaselineReplay, ReplaySpec, close_enough, compare_baselines
from schemas.catalog import default_catalog
from streams.logic.evaluation import baseline_event
from streams.logic.turns import TurnStats

WIRE = default_catalog().current("ChatTurn").wire


def day_of_turns(n: int = 6000) -> list[dict]:
    cfg = SimulatorConfig(turns=n, rate=n / 86_400, feedback_probability=0, seed=3)
    return [ev for kind, ev in TrafficSimulator(cfg).events() if kind == "ChatTurn"]


def write_archive(root, turns) -> None:
    by_file: dict[str, list] = {}
    for t in turns:
        by_file.setdefault(f"chat.turns/{day_of(t['event_time'])}/part-0.avro", []).append(t)
    for rel, recs in by_file.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fo:
            fastavro.writer(fo, WIRE, recs, codec="deflate")


def test_archive_replay_equals_folding_the_same_turns(tmp_path):
    turns = day_of_turns()
    write_archive(tmp_path, turns)
    start, end = turns[1000]["event_time"], turns[4000]["event_time"]
    spec = ReplaySpec("okla-v1.0", start, end)
    got = BaselineReplay(spec).from_archive(tmp_path)
    expected = TurnStats.of(t for t in turns if spec.wants(t))
    want = baseline_event("okla-v1.0", expected, "replay", 0)
    assert got["sample_size"] == expected.n > 1000
    assert close_enough(got, want, rel=1e-12) == []
    assert got["source"] == "replay" and got["window_start"] >= start and got["window_end"] <= end


def test_interrupted_replay_resumes_to_the_same_baseline(tmp_path):
    turns = day_of_turns()
    write_archive(tmp_path / "a", turns)
    whole = BaselineReplay(ReplaySpec("okla-v2.0")).from_archive(tmp_path / "a")
    ckpt = tmp_path / "replay.json"
    calls = []

    def interrupt(n, total):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        BaselineReplay(
            ReplaySpec("okla-v2.0"), checkpoint=ckpt, checkpoint_every=1000, progress=interrupt
        ).from_archive(tmp_path / "a")
    assert ckpt.exists()
    resumed = BaselineReplay(ReplaySpec("okla-v2.0"), checkpoint=ckpt, checkpoint_every=1000)
    got = resumed.from_archive(tmp_path / "a")
    assert close_enough(got, whole, rel=1e-12) == [] and got["sample_size"] == whole["sample_size"]
    assert not ckpt.exists()  # finished: the next run starts over
    with pytest.raises(ValueError, match="no turns of .nope."):
        BaselineReplay(ReplaySpec("nope")).from_archive(tmp_path / "a")


def test_archive_files_by_day_and_repair_cuts_uncheckpointed_bytes(tmp_path):
    turns = day_of_turns(2000)
    write_archive(tmp_path, turns)
    files = archive_files(tmp_path, "chat.turns")
    assert files and all(f.name == "part-0.avro" for f in files)
    assert sum(1 for _ in read_archive(files)) == len(turns)
    f = files[0]
    size = f.stat().st_size
    state = PartitionState(tmp_path / "state.json")
    state.offset, state.sizes = 2000, {f"chat.turns/{f.parent.name}/{f.name}": size}
    with f.open("ab") as fo:
        fo.write(b"half a block written before a crash")
    late = tmp_path / "chat.turns" / "2099-01-01" / "part-0.avro"
    late.parent.mkdir()
    late.write_bytes(b"begun after the checkpoint")
    state.repair(tmp_path, "chat.turns", 0)
    assert f.stat().st_size == size and not late.exists()
    assert sum(1 for _ in read_archive(archive_files(tmp_path, "chat.turns"))) == len(turns)


def test_compare_baselines_rows():
    a = {
        "sample_size": 100,
        "latency_p95_ms": 1000.0,
        "fallback_rate": 0.04,
        "intent_distribution": {"x": 0.5, "y": 0.5},
        "metrics": {"null_rate": 0.1},
    }
    b = {
        "sample_size": 100,
        "latency_p95_ms": 1500.0,
        "fallback_rate": 0.04,
        "intent_distribution": {"x": 0.9, "y": 0.1},
        "metrics": {"null_rate": 0.2},
    }
    rows = {r["stat"]: r for r in compare_baselines(a, b)}
    assert rows["latency_p95_ms"]["change"] == pytest.approx(0.5)
    assert rows["fallback_rate"]["change"] == 0.0
    assert rows["null_rate"]["change"] == pytest.approx(1.0)
    assert rows["intent_kl_divergence"]["b"] > 0.3
    assert close_enough(a, b) and close_enough(a, a) == []


def test_live_freeze_waits_for_complete_buckets_in_every_partition():
    from streams.logic.evaluation import closed_before, freeze_baseline
    from streams.logic.partials import Stage1Folder

    turns = day_of_turns(3000)
    folder = Stage1Folder(600_000)
    # Partition 0 is ahead (it has reached the last turns), partition 1 lags in the 3rd hour.
    lagging = [t for t in turns if t["event_time"] < turns[0]["event_time"] + 3 * 3600_000]
    items = [("turn", t, 0, i) for i, t in enumerate(turns[::2])]
    items += [("turn", t, 1, i) for i, t in enumerate(lagging[1::2])]
    partials = list(folder.fold(items, lambda k: None).values())
    subject = "okla-v1.0|*"
    limit = closed_before(partials, subject, expected=2)
    assert limit == max(p["b"] for p in partials if p["p"] == 1 and p["s"] == subject)
    frozen = freeze_baseline("okla-v1.0", partials, 100, expected_partitions=2)
    assert frozen is not None and frozen["window_end"] < limit  # only complete buckets
    # A partition not heard from yet holds the freeze back...
    assert closed_before(partials, subject, expected=6) is None
    assert freeze_baseline("okla-v1.0", partials, 300, expected_partitions=6) is None
    # ... until four times the needed turns were seen without it.
    assert freeze_baseline("okla-v1.0", partials, 40, expected_partitions=6) is not None


def test_a_predictive_models_baseline_replays_from_its_archived_predictions(tmp_path):
    from continuum.demo.dispatch import PredictionSimConfig, PredictionSimulator
    from streams.logic.predictions import PredictionStats

    cfg = PredictionSimConfig(predictions=3000, rate=3000 / 86_400)
    preds = [e for s, e in PredictionSimulator(cfg).events() if s == "Prediction"]
    wire = default_catalog().current("Prediction").wire
    path = tmp_path / "predictions" / day_of(preds[0]["event_time"]) / "part-0.avro"
    path.parent.mkdir(parents=True)
    with path.open("wb") as fo:
        fastavro.writer(fo, wire, preds, codec="deflate")
    spec = ReplaySpec("xgb-v2", kind="predictions", variant="ml-v2")
    got = BaselineReplay(spec).from_archive(tmp_path)
    expected = PredictionStats.of(p for p in preds if p["phase"] == "ml-v2")
    want = baseline_event("xgb-v2", expected, "replay", 0, "ml-v2")
    assert got["sample_size"] == expected.n > 2500 and got["tokens_mean"] is None
    assert close_enough(got, want, rel=1e-12) == []
    assert got["metrics"]["null_rate"] == expected.null_rate > 0
    with pytest.raises(ValueError, match="no predictions of 'okla-v1.0'"):
        BaselineReplay(ReplaySpec("okla-v1.0", kind="predictions")).from_archive(tmp_path)
    with pytest.raises(ValueError, match="replay kind must be one of turns, predictions"):
        ReplaySpec("xgb-v2", kind="outcomes")
