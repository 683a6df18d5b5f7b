"""What PII redaction costs the SDK: ``EventProducer.send`` of the same ChatTurns with the
default redaction (user and bot text scanned, keyed placeholders) and with it off, interleaved
repeats on the real local broker, medians. 5 % of the turns carry a phone number or an e-mail.

    python benchmarks/pii_redaction.py [--events 30000] [--repeats 5]

Target: redaction adds at most 15 % to the time per event.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._broker import benchmark_broker  # noqa: E402
from continuum.admin import TopicAdmin  # noqa: E402
from continuum.demo.chat import SimulatorConfig, TrafficSimulator  # noqa: E402
from continuum.topics import all_specs  # noqa: E402
from producers import EventProducer  # noqa: E402
from producers.pii import Redactor, parse_policy  # noqa: E402


def turns(n: int) -> list[dict]:
    cfg = SimulatorConfig(turns=n, feedback_probability=0, seed=7)
    out = [e for _, e in TrafficSimulator(cfg).events()]
    rng = random.Random(3)
    for t in out:
        if rng.random() < 0.05:
            t["user_query"] += rng.choice(
                [" mi cel es 809-555-0142", " escríbeme a cliente@gmail.com"]
            )
    return out


def run(bootstrap: str, prefix: str, events: list[dict], redactor: Redactor) -> float:
    p = EventProducer(bootstrap, topic_prefix=prefix, redactor=redactor)
    t = time.perf_counter()
    for ev in events:
        p.send("ChatTurn", ev)
    p.flush(60)
    elapsed = time.perf_counter() - t
    p.close(raise_on_failure=False)
    return elapsed / len(events) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    events = turns(args.events)
    on = Redactor(parse_policy("redact"), b"bench-key")
    off = Redactor(parse_policy("off"))
    with benchmark_broker() as bootstrap:
        prefix = f"bench-pii-{int(time.time())}-"
        TopicAdmin(bootstrap, prefix).create(all_specs())
        run(bootstrap, prefix, events[:2000], on)  # warm up
        us: dict[str, list[float]] = {"off": [], "redact": []}
        for _ in range(args.repeats):
            us["off"].append(run(bootstrap, prefix, events, off))
            us["redact"].append(run(bootstrap, prefix, events, on))
    med = {k: statistics.median(v) for k, v in us.items()}
    print(
        json.dumps(
            {
                "events": len(events),
                "us_per_event_off": round(med["off"], 2),
                "us_per_event_redact": round(med["redact"], 2),
                "added": f"{med['redact'] / med['off'] - 1:+.1%}",
                "redactions_per_run": sum(on.counts.values()) // (args.repeats + 1),
                "target": "<= +15 %",
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
