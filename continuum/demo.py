"""The newcomer's demo: local Kafka up, topics created, simulated chat traffic flowing through the
producer SDK, read back by a consumer and summarised live in the terminal."""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from continuum.admin import TopicAdmin
from continuum.localkafka import LocalKafka
from continuum.settings import Settings
from continuum.topics import topic_spec


@dataclass
class ArmStats:
    turns: int = 0
    feedback: int = 0
    satisfied: int = 0
    recent: deque[tuple[float, float, bool]] = field(default_factory=lambda: deque(maxlen=300))

    def row(self) -> tuple[str, ...]:
        lat = sorted(x[0] for x in self.recent)
        p95 = lat[int(0.95 * (len(lat) - 1))] if lat else 0.0
        conf = statistics.fmean(x[1] for x in self.recent) if self.recent else 0.0
        fb = sum(x[2] for x in self.recent) / len(self.recent) if self.recent else 0.0
        sat = self.satisfied / self.feedback if self.feedback else 0.0
        return (
            str(self.turns),
            str(self.feedback),
            f"{conf:.3f}",
            f"{fb:.1%}",
            f"{p95:,.0f}",
            f"{sat:.1%}",
        )


def _table(
    stats: dict[tuple[str, str], ArmStats], dlq: int, elapsed: float, drift_at: float | None
) -> Table:
    title = f"Continuum demo - {elapsed:,.0f}s"
    if drift_at is not None:
        title += " - drift " + (
            "INJECTED" if elapsed >= drift_at else f"in {drift_at - elapsed:.0f}s"
        )
    t = Table(title=title, caption=f"dead-lettered records: {dlq}  (Ctrl-C to stop)")
    for col in (
        "model",
        "variant",
        "turns",
        "feedback",
        "confidence*",
        "fallback*",
        "p95 ms*",
        "satisfied",
    ):
        t.add_column(col, justify="right" if col not in ("model", "variant") else "left")
    for (model, variant), s in sorted(stats.items()):
        t.add_row(model, variant, *s.row())
    t.caption += "   * over the last 300 turns"
    return t


def _alerts_table(
    breaches: dict[tuple[str, str], dict], alerts: dict[str, dict], web: str
) -> Table:
    t = Table(
        title="Drift breaches and open alerts (from the streams worker)",
        caption=f"views: {web}/drift/  {web}/alerts/active/  {web}/ab/v1-vs-v2/  {web}/metrics",
    )
    for col in ("kind", "model", "what", "value", "baseline / severity"):
        t.add_column(col)
    for (model, signal_name), e in sorted(breaches.items()):
        base = "" if e.get("baseline") is None else f"{e['baseline']:.4g}"
        t.add_row("signal", model, f"{signal_name} ({e['detector']})", f"{e['value']:.4g}", base)
    for e in list(alerts.values())[-8:]:
        t.add_row("ALERT", e.get("model_version") or "", e["title"], e["alert_type"], e["severity"])
    if not breaches and not alerts:
        t.add_row(
            "",
            "",
            "none yet: the baseline is frozen from the first turns, drift comes later",
            "",
            "",
        )
    return t


def _start_streams_worker(
    settings: Settings, console: Console
) -> tuple[subprocess.Popen[bytes], str]:
    """The analytics worker with demo-sized windows (30 s every 5 s)."""
    port = 6066
    log = settings.home / "demo-streams.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CONTINUUM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "CONTINUUM_TOPIC_PREFIX": settings.topic_prefix,
        "CONTINUUM_HOME": str(settings.home),
    }
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "continuum.cli",
            "streams",
            "worker",
            "--app-id",
            "continuum-demo",
            "--web-port",
            str(port),
            "--window-s",
            "30",
            "--hop-s",
            "5",
            "--freeze-after",
            "1000",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    out.close()
    console.print(
        f"[green]streams worker[/] started (log {log}); views at http://127.0.0.1:{port}/"
    )
    return proc, f"http://127.0.0.1:{port}"


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from continuum.cli import _sim_config
    from producers.consumer import EventConsumer
    from producers.producer import EventProducer
    from producers.simulator import run

    console = Console(width=max(100, Console().width))
    kafka = LocalKafka.from_settings(settings)
    started_here = not kafka.running()
    with console.status("starting Apache Kafka (KRaft) on 127.0.0.1..."):
        bootstrap = kafka.start()
    settings = settings.with_(bootstrap_servers=bootstrap)
    if not settings.topic_prefix:
        # Each demo run gets fresh topics (baselines and experiments are compacted and would
        # otherwise carry over); the previous runs' topics are deleted.
        settings = settings.with_(topic_prefix=time.strftime("demo-%H%M%S-"))
        old = [t for t in TopicAdmin(bootstrap).list() if re.match(r"demo-\d{6}-", t)]
        if old:
            TopicAdmin(bootstrap).delete(old)
    created = TopicAdmin(bootstrap, settings.topic_prefix).create()
    console.print(
        f"[green]Kafka[/] at {bootstrap}; {len(created)} topics ready "
        f"({sum(v == 'created' for v in created.values())} created)"
    )

    config = _sim_config(args)
    worker, web = _start_streams_worker(settings, console)
    stop = threading.Event()
    stats: dict[tuple[str, str], ArmStats] = defaultdict(ArmStats)
    breaches: dict[tuple[str, str], dict] = {}
    alerts: dict[str, dict] = {}
    quiet = {"log_level": 3}  # librdkafka: errors only, the live table is the demo's output
    producer = EventProducer.from_settings(settings, config=quiet)
    consumer = EventConsumer(
        bootstrap,
        f"continuum-demo-{os.getpid()}",
        ["chat.turns", "chat.feedback", "drift-signals", "alerts"],
        dlq_producer=producer,
        topic_prefix=settings.topic_prefix,
        config={"auto.offset.reset": "latest", **quiet},
    )
    sim_thread: threading.Thread | None = None
    began = time.monotonic()
    try:
        consumer.wait_assigned(30)
        # One undecodable record, to show it landing in the dead-letter topic with its reason.
        producer.produce_raw(
            topic_spec("chat.turns").full_name(settings.topic_prefix),
            b"{not avro}",
            key=b"demo-corrupt",
        )
        sim_thread = threading.Thread(
            target=run,
            name="simulator",
            daemon=True,
            args=(lambda schema, ev: producer.send(schema, ev), config),
            kwargs={"realtime": True, "live_time": True, "should_stop": stop.is_set},
        )
        sim_thread.start()
        drift_at = config.drift.at_s if config.drift else None
        with Live(console=console, refresh_per_second=2) as live:
            while args.seconds <= 0 or time.monotonic() - began < args.seconds:
                for ev in consumer.poll(0.5):
                    e = ev.event
                    if ev.schema == "Alert":
                        if e["status"] == "OPEN":
                            alerts[e["dedup_key"]] = e
                        else:
                            alerts.pop(e["dedup_key"], None)
                        continue
                    if ev.schema == "DriftSignal":
                        if e["breached"]:
                            breaches[(e["model_version"], e["signal"])] = e
                        else:
                            breaches.pop((e["model_version"], e["signal"]), None)
                        continue
                    key = (e.get("model_version") or "?", e.get("variant") or "-")
                    s = stats[key]
                    if ev.schema == "ChatTurn":
                        s.turns += 1
                        s.recent.append((e["latency_ms"], e["confidence"] or 0.0, e["is_fallback"]))
                    else:
                        s.feedback += 1
                        s.satisfied += (e.get("rating") or 0) >= 4 or e.get("thumbs") == "UP"
                consumer.commit()
                live.update(
                    Group(
                        _table(
                            stats,
                            consumer.decoder.dead_lettered,
                            time.monotonic() - began,
                            drift_at,
                        ),
                        _alerts_table(breaches, alerts, web),
                    )
                )
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        stop.set()
        if sim_thread is not None:
            sim_thread.join(10)
        consumer.close()
        producer.close(raise_on_failure=False)
        _stop_process(worker)
        if started_here and not args.keep_broker:
            with console.status("stopping Kafka..."):
                kafka.stop()
            console.print("broker stopped; nothing left running")
        else:
            console.print(f"broker left running at {bootstrap} (continuum broker stop)")
    turns = sum(s.turns for s in stats.values())
    console.print(
        f"consumed {turns} chat turns, {sum(s.feedback for s in stats.values())} feedback events, "
        f"{consumer.decoder.dead_lettered} dead-lettered"
    )
    return 0
