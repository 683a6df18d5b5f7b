"""The cost of TLS + SASL: the same work over the embedded broker's PLAINTEXT listener and its
SASL_SSL listener (SCRAM-SHA-512, TLS 1.3 with hostname verification), in one run.

1. SDK producer (validate + encode + produce, acks=all, final flush included): events/s,
   interleaved runs, median of --repeats.
2. Streams worker (stage 1 + Faust stage 2) folding a pre-loaded topic: turns/s from its
   /metrics counter, one run per listener on identical data.

No target: the ratio is what a team pays for encryption on this machine.

    python benchmarks/secure_throughput.py [--events 50000] [--turns 60000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serde_produce import chat_turns, sdk  # noqa: E402
from benchmarks.streams_throughput import analytics, preload  # noqa: E402
from continuum.admin import TopicAdmin  # noqa: E402
from continuum.kafka import Connection  # noqa: E402
from continuum.localkafka import LocalKafka, free_port  # noqa: E402
from continuum.topics import all_specs, topic_spec  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--turns", type=int, default=60_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="continuum-secure-") as home:
        kafka = LocalKafka(
            Path(home), port=free_port(), controller_port=free_port(), secure_port=free_port()
        )
        kafka.start(timeout=180)
        try:
            plain = Connection(kafka.bootstrap)
            secure = kafka.secure_connection()
            records = chat_turns(args.events, seed=4)
            TopicAdmin(plain, "bench-").create([topic_spec("chat.turns")])
            topic = topic_spec("chat.turns").full_name("bench-")
            rates: dict[str, list[float]] = {"PLAINTEXT": [], "SASL_SSL": []}
            for _ in range(args.repeats):
                for name, conn in (("PLAINTEXT", plain), ("SASL_SSL", secure)):
                    rates[name].append(sdk(conn, topic, records))
                    print(f"  produce {name}: {rates[name][-1]:,.0f} events/s", flush=True)
            folds: dict[str, float] = {}
            for name, env in (("PLAINTEXT", {}), ("SASL_SSL", kafka.client_env())):
                prefix = f"fold-{name.lower()}-"
                TopicAdmin(plain, prefix).create(all_specs())
                preload(plain, prefix, args.turns)
                # The secure environment names the SASL_SSL listener as the bootstrap.
                folds[name] = analytics(kafka.bootstrap, prefix, args.turns, extra_env=env)
                print(f"  streams worker {name}: {folds[name]:,.0f} turns/s", flush=True)
        finally:
            kafka.stop()
    p, s = statistics.median(rates["PLAINTEXT"]), statistics.median(rates["SASL_SSL"])
    print(
        f"\nSDK producer: PLAINTEXT {p:,.0f} events/s, SASL_SSL {s:,.0f} events/s "
        f"(ratio {s / p:.2f}, median of {args.repeats})"
    )
    fp, fs = folds["PLAINTEXT"], folds["SASL_SSL"]
    print(
        f"streams worker: PLAINTEXT {fp:,.0f} turns/s, SASL_SSL {fs:,.0f} turns/s "
        f"(ratio {fs / fp:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
