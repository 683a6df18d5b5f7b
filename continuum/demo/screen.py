"""What the demo shows in the terminal: live tables of the traffic, the drift and alerts, the
inference path and alert delivery."""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

from rich.table import Table

from continuum.demo.chatbot import ChatStats
from continuum.demo.services import Service, WebhookSink


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


def traffic_table(
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


def alerts_table(breaches: dict[tuple[str, str], dict], alerts: dict[str, dict], web: str) -> Table:
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


def breach_timing(since_traffic_s: float, signal_name: str) -> str:
    """When the first breached signal arrived: after the traffic started, after the demo
    process started, and after `make demo` began (the Makefile passes its start time)."""
    now = time.time()
    parts = [f"{since_traffic_s:.0f} s after the traffic started"]
    parts.append(f"{now - PROCESS_STARTED:.0f} s after the demo started")
    make_started = os.environ.get("CONTINUUM_DEMO_MAKE_STARTED")
    if make_started:
        try:
            parts.append(f"{now - float(make_started):.0f} s after `make demo` began")
        except ValueError:
            pass
    return f"[bold]first breached signal[/] ({signal_name}): " + ", ".join(parts)


PROCESS_STARTED = time.time()


def loop_table(
    services: dict[str, Service], up: dict[str, bool], chat: ChatStats, sink: WebhookSink
) -> Table:
    t = Table(title="Inference path and alert delivery", show_header=True)
    for col in ("what", "status", "detail"):
        t.add_column(col)
    for name, svc in services.items():
        state = (
            "running" if up.get(name) else ("exited" if svc.proc.poll() is not None else "starting")
        )
        t.add_row(name, state, f"{svc.url}   log: {svc.log}")
    lat = sorted(chat.latencies)
    p50 = f"{lat[len(lat) // 2]:,.0f} ms" if lat else "-"
    t.add_row(
        "chat via gateway",
        f"{chat.ok} ok / {chat.errors} failed",
        f"p50 {p50}; last answer: {chat.last[:90]}",
    )
    last = sink.received[-1]["alert"] if sink.received else None
    t.add_row(
        "webhook (Slack stand-in)",
        f"{sink.count} posts",
        f"last: [{last['severity']}] {last['title']}" if last else "no alert delivered yet",
    )
    return t
