"""Fresh starts, as a newcomer's first run: N times in a row, a new local Kafka (empty data
folder, new ports), the topics, then the demo's services (streams worker, inference worker on
llama.cpp, gateway, alert consumer). A start is clean when every service answers its health
endpoint, a first chat is answered through the gateway, no service had to be restarted, and no
record reached a dead-letter topic. Prints each start and then clean starts / N and the time from
the services' launch to the first answered chat (p50, max).

    python benchmarks/startup.py [--runs 20] [--timeout-s 180]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from continuum.admin import TopicAdmin  # noqa: E402
from continuum.demo.services import (  # noqa: E402
    WebhookSink,
    dead_letters,
    start_services,
    stop_process,
    wait_ready,
)
from continuum.localkafka import LocalKafka, free_port  # noqa: E402
from continuum.settings import Settings  # noqa: E402


def one_start(timeout_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="continuum-startup-") as home:
        kafka = LocalKafka(Path(home) / "kafka", port=free_port(), controller_port=free_port())
        t0 = time.monotonic()
        bootstrap = kafka.start(timeout=180)
        settings = Settings(bootstrap_servers=bootstrap, home=Path(home), topic_prefix="s-")
        try:
            TopicAdmin(bootstrap, settings.topic_prefix).create()
            broker_s = time.monotonic() - t0
            with WebhookSink() as sink:
                notes: list[str] = []
                services = start_services(settings, sink.url)
                try:
                    problems, first_chat_s = wait_ready(services, notes.append, timeout_s)
                    time.sleep(3)  # anything a start-up writes lands by now
                    dlq = dead_letters(bootstrap, settings.topic_prefix)
                    restarts = sum(s.restarts for s in services.values())
                    exited = [n for n, s in services.items() if s.proc.poll() is not None]
                finally:
                    for name in ("gateway", "inference", "streams", "alerts"):
                        stop_process(services[name].proc)
        finally:
            kafka.stop()
    clean = not problems and first_chat_s is not None and not restarts and not exited and dlq == 0
    return {
        "clean": clean,
        "broker_s": broker_s,
        "first_chat_s": first_chat_s,
        "problems": problems,
        "restarts": restarts,
        "exited": exited,
        "dead_letters": dlq,
        "notes": notes,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--timeout-s", type=float, default=180.0)
    args = ap.parse_args()
    results = []
    for i in range(args.runs):
        r = one_start(args.timeout_s)
        results.append(r)
        chat = "-" if r["first_chat_s"] is None else f"{r['first_chat_s']:.1f} s"
        print(
            f"start {i + 1:2}: {'clean' if r['clean'] else 'NOT CLEAN'}  broker {r['broker_s']:.1f} s"
            f"  first chat {chat}  restarts {r['restarts']}  dead letters {r['dead_letters']}"
            + (f"  problems {r['problems']} exited {r['exited']}" if not r["clean"] else ""),
            flush=True,
        )
        for note in r["notes"]:
            print("    " + note.replace("\n", "\n    "), flush=True)
    times = [r["first_chat_s"] for r in results if r["first_chat_s"] is not None]
    clean = sum(r["clean"] for r in results)
    print(f"\nclean starts: {clean} of {len(results)}")
    if times:
        print(
            f"time from launch to the first answered chat: p50 {statistics.median(times):.1f} s, "
            f"max {max(times):.1f} s"
        )
    return 0 if clean == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
