"""Which embedding for semantic drift? Candidates measured in one run on the same queries:

- ``hashed``: character 3..5-grams hashed into 512 dimensions (``streams.logic.semantic``), no
  model;
- ``gguf``: the GGUF model the inference worker already serves (SmolLM2-135M), mean-pooled
  embeddings through llama.cpp (``Llama(embedding=True).embed``).

For each: queries per second on this machine (cold: no cache), and how well it separates a new
topic: the MMD permutation p-value and the share of windows flagged at alpha 1 % over windows
with 0 % (false alarms), 5 %, 10 % and 20 % of electric-car queries in otherwise ordinary traffic.
Then the cost per turn at a sampling rate: a window of ``--window-turns`` turns is compared on
256 sampled queries, so the cost per turn is (embed 256 + test) / window turns.

    python benchmarks/embeddings.py [--trials 20]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from continuum.demo.chat import NEW_TOPIC_QUERIES, SimulatorConfig, TrafficSimulator  # noqa: E402
from streams.logic.semantic import HashedNgrams, mmd_test  # noqa: E402


class GgufEmbedder:
    name = "gguf-smollm2-mean"

    def __init__(self, threads: int = 2) -> None:
        from llama_cpp import Llama

        from inference.engines.llamacpp import bundled_model_path

        self.llm = Llama(
            model_path=str(bundled_model_path()),
            embedding=True,
            n_ctx=512,
            n_threads=threads,
            verbose=False,
        )
        self.cache: dict[str, np.ndarray] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for t in texts:
            v = self.cache.get(t)  # the simulator's queries repeat: each text embedded once
            if v is None:
                v = np.asarray(self.llm.embed(t), dtype=np.float64)
                if v.ndim == 2:  # per-token vectors: mean-pool
                    v = v.mean(axis=0)
                n = np.linalg.norm(v)
                v = self.cache[t] = v / n if n else v
            rows.append(v)
        return np.vstack(rows)


def ordinary(n: int, seed: int) -> list[str]:
    cfg = SimulatorConfig(turns=n, rate=10, seed=seed, treatment_version=None, experiment_id=None)
    return [e["user_query"] for k, e in TrafficSimulator(cfg).events() if k == "ChatTurn"]


def with_topic(base: list[str], share: float, rng: random.Random) -> list[str]:
    cars = ["Toyota Corolla", "BYD Dolphin", "Hyundai Kona", "Kia Niro"]
    out = list(base)
    for i in range(len(out)):
        if rng.random() < share:
            out[i] = rng.choice(NEW_TOPIC_QUERIES).format(v=rng.choice(cars), n="0000")
    return out


def measure(emb: Any, args: argparse.Namespace) -> dict[str, Any]:
    pool = ordinary(6000, 1)
    rng = random.Random(7)
    distinct = list(dict.fromkeys(pool + ordinary(3000, 2)))[:400]
    timed = distinct if isinstance(emb, HashedNgrams) else distinct[:100]
    t0 = time.perf_counter()
    fresh = type(emb)() if isinstance(emb, HashedNgrams) else emb  # cold: nothing cached yet
    fresh.embed(timed)
    qps = len(timed) / (time.perf_counter() - t0)
    print(f"{emb.name}: {qps:.1f} queries/s (cold)", flush=True)
    flagged: dict[str, float] = {}
    pvals: dict[str, float] = {}
    test_ms = []
    for share in (0.0, 0.05, 0.10, 0.20):
        hits, ps = 0, []
        for trial in range(args.trials):
            base = rng.sample(pool, 256)
            window = with_topic(rng.sample(pool, 256), share, rng)
            x, y = emb.embed(base), emb.embed(window)
            t1 = time.perf_counter()
            r = mmd_test(x, y, alpha=0.01, permutations=200, seed=trial)
            test_ms.append((time.perf_counter() - t1) * 1000)
            hits += r.p_value < 0.01
            ps.append(r.p_value)
        flagged[f"{share:.0%}"] = hits / args.trials
        pvals[f"{share:.0%}"] = float(np.median(ps))
        print(f"{emb.name}: {share:.0%} new topic: flagged {hits}/{args.trials}", flush=True)
    embed_256_ms = 256 / qps * 1000
    per_window_ms = embed_256_ms + float(np.median(test_ms))
    return {
        "embedder": emb.name,
        "queries_per_s": round(qps, 1),
        "mmd_test_ms_p50": round(float(np.median(test_ms)), 1),
        "flagged_share_at_alpha_1pct": flagged,
        "median_p_value": pvals,
        "per_window_ms": round(per_window_ms, 1),
        "per_turn_us": round(per_window_ms * 1000 / args.window_turns, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=20, help="windows per topic share")
    ap.add_argument(
        "--window-turns", type=int, default=6000, help="turns per window (20/s x 5 min)"
    )
    ap.add_argument("--skip-gguf", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    report = {"hashed": measure(HashedNgrams(), args)}
    if not args.skip_gguf:
        report["gguf"] = measure(GgufEmbedder(), args)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    h = report["hashed"]
    line = (
        f"\nhashed n-grams: {h['queries_per_s']:.0f} queries/s, flagged "
        f"{h['flagged_share_at_alpha_1pct']} ; {h['per_turn_us']} us per turn"
    )
    if "gguf" in report:
        g = report["gguf"]
        line += (
            f"\nGGUF embeddings: {g['queries_per_s']:.0f} queries/s "
            f"({g['queries_per_s'] / h['queries_per_s']:.3f} x hashed), flagged "
            f"{g['flagged_share_at_alpha_1pct']} ; {g['per_turn_us']} us per turn"
        )
    print(line)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
