"""Replay speed and memory over a large archive (default 1 000 000 ChatTurns).

1. Writes the archive once (simulated traffic over several days, daily Avro container files,
   deflate, the archive job's layout) into a temporary folder.
2. Ceiling: a bare ``fastavro.reader`` loop over the same files, doing nothing with the records.
3. Replay: ``BaselineReplay.from_archive`` (read + filter + TurnStats fold + summary) with
   checkpoints every 100 000 events, as ``continuum replay baseline --from-archive`` runs it.

Prints events/s of both, their ratio, and the replay's peak Python heap (tracemalloc, measured in a
separate pass so tracing does not slow the timed one) and the process's peak RSS.

    python benchmarks/replay.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import fastavro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from continuum.demo.chat import SimulatorConfig, TrafficSimulator  # noqa: E402
from jobs.archive import archive_files, day_of  # noqa: E402
from jobs.replay import BaselineReplay, ReplaySpec  # noqa: E402
from schemas.catalog import default_catalog  # noqa: E402


def write_archive(root: Path, n: int, days: int) -> None:
    wire = default_catalog().current("ChatTurn").wire
    cfg = SimulatorConfig(turns=n, rate=n / (days * 86_400), feedback_probability=0, seed=1)
    buffers: dict[str, list[dict]] = {}

    def flush(rel: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+b") as fo:
            fastavro.writer(fo, wire, buffers.pop(rel), codec="deflate")

    for kind, ev in TrafficSimulator(cfg).events():
        if kind != "ChatTurn":
            continue
        rel = f"chat.turns/{day_of(ev['event_time'])}/part-{hash(ev['session_id']) % 6}.avro"
        buffers.setdefault(rel, []).append(ev)
        if len(buffers[rel]) >= 5000:
            flush(rel)
    for rel in list(buffers):
        flush(rel)


def ceiling(root: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for f in archive_files(root, "chat.turns"):
        with f.open("rb") as fo:
            for _ in fastavro.reader(fo):
                n += 1
    return n, time.perf_counter() - t0


def replay(root: Path, ckpt: Path) -> tuple[dict, float]:
    t0 = time.perf_counter()
    out = BaselineReplay(ReplaySpec("okla-v1.0"), checkpoint=ckpt).from_archive(root)
    return out, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="continuum-replay-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_archive(root, args.events, args.days)
        files = archive_files(root, "chat.turns")
        size = sum(f.stat().st_size for f in files)
        print(
            f"archive: {args.events} turns in {len(files)} files, {size / 1e6:.1f} MB "
            f"(written in {time.perf_counter() - t0:.1f} s)"
        )
        n, ceil_s = ceiling(root)
        baseline, replay_s = replay(root, root / "ckpt.json")
        tracemalloc.start()
        replay(root, root / "ckpt2.json")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ceiling (bare fastavro read): {n / ceil_s:,.0f} events/s")
    print(
        f"replay (read + fold + checkpoints): {n / replay_s:,.0f} events/s "
        f"= {ceil_s / replay_s:.2f} x ceiling"
    )
    print(
        f"baseline of okla-v1.0 over {baseline['sample_size']:,} turns: "
        f"p95 {baseline['latency_p95_ms']:.0f} ms, fallback {baseline['fallback_rate']:.3f}"
    )
    print(f"replay peak Python heap: {peak / 1e6:.1f} MB; process peak RSS: {rss_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
