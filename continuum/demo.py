"""The newcomer's demo, the whole loop on this machine: local Kafka up, topics created; the
streams worker, the inference worker (llama.cpp + SmolLM2 on CPU) and its OpenAI-compatible
gateway, and the alert consumer posting to a local webhook sink started as child processes;
simulated chat traffic with an A/B test and drift injected part-way, plus real chats through the
gateway; summarised live in the terminal, with the live dashboard page served by the streams
worker. Ctrl-C (or --seconds) stops everything it started."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from continuum import kafka as clients
from continuum.admin import TopicAdmin
from continuum.localkafka import LocalKafka, free_port
from continuum.settings import Settings
from producers.schema_topic import decoder_for
from producers.simulator import SimulatorConfig
from streams.logic.abtest import is_satisfied


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


DEMO_MODEL = "okla-smollm2-demo"  # what the CPU inference worker reports serving
DEMO_PREDICTION_RATE = 40.0  # dispatch predictions per second, next to the chat traffic


def _port(preferred: int) -> int:
    """``preferred`` when free on loopback, else any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0

    def tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def restart(self) -> None:
        """Start the service again (same command, same log file)."""
        self.restarts += 1
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "continuum.cli", *self.argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        out.close()

    def ready(self, path: str) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            return httpx.get(self.url + path, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False


def _spawn(
    settings: Settings, name: str, argv: list[str], url: str, env: dict[str, str] | None = None
) -> Service:
    """One Continuum service as a child process in its own session (Ctrl-C reaches only the
    demo, which stops the children in order), its output in ``$CONTINUUM_HOME/demo-NAME.log``."""
    log = settings.home / f"demo-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    child_env = {
        **os.environ,
        "CONTINUUM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "CONTINUUM_TOPIC_PREFIX": settings.topic_prefix,
        "CONTINUUM_HOME": str(settings.home),
        "CONTINUUM_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        **(env or {}),
    }
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "continuum.cli", *argv],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=child_env,
        start_new_session=True,
    )
    out.close()
    return Service(name, proc, url, log, list(argv), child_env)


PROBES = {"streams": "/health/", "inference": "/health", "gateway": "/health"}


def revive(svc: Service, say: Callable[[str], None]) -> bool:
    """A service that exited is started once more, its log tail shown; False when it already was
    (it stays down)."""
    if svc.proc.poll() is None:
        return True
    if svc.restarts >= 1:
        return False
    say(
        f"[red]{svc.name} exited[/] (code {svc.proc.returncode}); starting it once more. "
        f"Last lines of {svc.log}:\n{svc.tail()}"
    )
    svc.restart()
    return True


def first_chat(gateway_url: str, timeout_s: float = 60.0) -> str | None:
    """One request through the gateway and back; None when it worked, else why not."""
    try:
        r = httpx.post(
            f"{gateway_url}/v1/chat/completions",
            json={
                "model": DEMO_MODEL,
                "messages": [{"role": "user", "content": "Hola"}],
                "max_tokens": 4,
            },
            timeout=timeout_s,
        )
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:160]}"


def wait_ready(
    services: dict[str, Service], say: Callable[[str], None], deadline_s: float
) -> tuple[dict[str, str], float | None]:
    """Until every service answers its health endpoint and one chat went through the gateway
    and back (a service that dies meanwhile is restarted once). Returns what is still not ready
    (service -> why) and the seconds the first chat took to be answered from the start."""
    began = time.monotonic()
    up: dict[str, bool] = {}
    problems: dict[str, str] = {}
    last_error = ""
    while time.monotonic() - began < deadline_s:
        for name, svc in services.items():
            if name in problems:
                continue
            if not revive(svc, say):
                problems[name] = f"exited twice (code {svc.proc.returncode}); see {svc.log}"
                continue
            if not up.get(name):
                up[name] = svc.ready(PROBES[name]) if name in PROBES else True
        llm = "gateway" in services and "inference" in services
        if "gateway" in problems or "inference" in problems:
            break
        if not llm:  # the engine is still being built: the analytics alone
            if all(up.get(n) for n in services if n not in problems):
                return problems, None
        elif up.get("gateway") and up.get("inference"):
            why = first_chat(services["gateway"].url)
            if why is None:
                if all(up.get(n) for n in services if n not in problems):
                    return problems, time.monotonic() - began
            else:
                last_error = why
        time.sleep(0.5)
    for name in services:
        if not up.get(name) and name not in problems:
            problems[name] = "not ready in time; see " + str(services[name].log)
    if "chat" not in problems and last_error:
        problems["chat"] = f"the first chat through the gateway failed: {last_error}"
    return problems, None


def dead_letters(kafka: str | clients.Connection, prefix: str) -> int:
    """Records on every dead-letter topic of this run."""
    from confluent_kafka import TopicPartition

    from continuum.retry import with_retry

    c = clients.consumer(kafka, "continuum-demo-dlq-count")
    try:
        md = with_retry(lambda: c.list_topics(timeout=10), "demo: listing topics")
        total = 0
        for name, topic in md.topics.items():
            if name.startswith(prefix) and name.endswith(".dlq"):
                for p in topic.partitions:
                    lo, hi = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                    total += max(0, hi - lo)
        return total
    finally:
        c.close()


ENGINE_LOG = ".continuum/engine-build.log"


def _breach_timing(since_traffic_s: float, signal_name: str) -> str:
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


def engine_available() -> bool:
    """Whether the CPU engine (llama-cpp-python) imports in a fresh interpreter: on a first run
    `make demo` builds it in the background, and the demo attaches the LLM services once it can."""
    probe = subprocess.run(
        [sys.executable, "-c", "import llama_cpp"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


def _start_services(settings: Settings, sink_url: str, *, llm: bool = True) -> dict[str, Service]:
    """Streams worker (demo-sized windows: 30 s every 5 s) and the alert consumer posting to the
    sink; with ``llm``, the inference worker on the CPU engine and the gateway too."""
    web = _port(6066)
    services = {
        "streams": _spawn(
            settings,
            "streams",
            [
                "streams",
                "worker",
                "--app-id",
                "continuum-demo",
                "--web-port",
                str(web),
                "--window-s",
                "30",
                "--hop-s",
                "5",
                "--freeze-after",
                "1000",
            ],
            f"http://127.0.0.1:{web}",
        ),
        "alerts": _spawn(
            settings,
            "alerts",
            ["alerts", "webhook", "--group-id", f"continuum-demo-alerts-{os.getpid()}"],
            sink_url,
            env={"CONTINUUM_WEBHOOK_URL": sink_url},
        ),
    }
    if llm:
        services.update(_start_llm(settings))
    return services


def _start_llm(settings: Settings) -> dict[str, Service]:
    """The inference worker (llama.cpp + the bundled SmolLM2, on CPU) and the gateway."""
    gw, wk = _port(8000), _port(8001)
    return {
        "inference": _spawn(
            settings,
            "inference",
            [
                "infer",
                "worker",
                "--engine",
                "llamacpp",
                "--worker-host",
                "127.0.0.1",
                "--worker-port",
                str(wk),
                "--model-version",
                DEMO_MODEL,
                "--threads",
                "1",
            ],
            f"http://127.0.0.1:{wk}",
        ),
        "gateway": _spawn(
            settings,
            "gateway",
            ["infer", "gateway", "--gateway-host", "127.0.0.1", "--gateway-port", str(gw)],
            f"http://127.0.0.1:{gw}",
        ),
    }


class WebhookSink:
    """A local stand-in for Slack: an HTTP server on loopback that keeps what the alert consumer
    posts (the generic JSON webhook body)."""

    def __init__(self) -> None:
        received = self.received = deque(maxlen=200)
        self.count = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    received.append(json.loads(body))
                    sink.count += 1
                    self.send_response(200)
                except json.JSONDecodeError:
                    self.send_response(400)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


QUESTIONS = (
    "Klk, busco una yipeta Toyota RAV4 2019, ¿cuánto sale?",
    "¿Tienen carros financiados con poco inicial?",
    "Quiero vender mi Honda Civic 2017, ¿cómo hago?",
    "¿Dónde queda el dealer y a qué hora abren el sábado?",
    "Ta bien, mándame info del Hyundai Tucson por WhatsApp",
)


@dataclass
class ChatStats:
    ok: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    last: str = ""


def chat_loop(
    gateway_url: str, model: str, stats: ChatStats, stop: threading.Event, every_s: float
) -> None:
    """The chatbot service's side of the inference path: real questions through the gateway
    (OpenAI API) -> inference.requests -> worker -> inference.responses, one every ``every_s``.
    The calls name the demo model, so the simulated v1-vs-v2 experiment does not route them to
    versions no worker here serves."""
    i = 0
    with httpx.Client(base_url=gateway_url, timeout=60) as http:
        while not stop.is_set():
            q = QUESTIONS[i % len(QUESTIONS)]
            i += 1
            t0 = time.monotonic()
            try:
                r = http.post(
                    "/v1/chat/completions",
                    json={
                        "model": model,
                        "messages": [{"role": "user", "content": q}],
                        "max_tokens": 40,
                    },
                    headers={"X-Session-Id": f"demo-{i // 3}"},
                )
                if r.status_code == 200:
                    stats.ok += 1
                    stats.latencies.append((time.monotonic() - t0) * 1000)
                    stats.last = r.json()["choices"][0]["message"]["content"].strip()
                else:
                    stats.errors += 1
                    stats.last = f"HTTP {r.status_code}: {r.text[:120]}"
            except httpx.HTTPError as exc:
                stats.errors += 1
                stats.last = f"{type(exc).__name__}: {exc}"
            stop.wait(every_s)


def _loop_table(
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


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(settings: Settings, args: argparse.Namespace, config: SimulatorConfig) -> int:
    """``config``: the chat traffic to simulate (built by the CLI from its flags)."""
    from producers.consumer import EventConsumer
    from producers.producer import EventProducer
    from producers.simulator import PredictionSimConfig, run, run_predictions

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

    sink = WebhookSink().__enter__()
    llm_ready = engine_available()
    services = _start_services(settings, sink.url, llm=llm_ready)
    try:  # until the main loop's own try: a failure or Ctrl-C here must not leave children
        web = services["streams"].url
        if llm_ready:
            console.print(
                f"[green]started[/] streams worker, inference worker, gateway, alert consumer\n"
                f"  live dashboard  {web}/dashboard/\n"
                f"  OpenAI API      {services['gateway'].url}/v1/chat/completions\n"
                f"  LLM metrics     {services['inference'].url}/metrics\n"
                f"  webhook sink    {sink.url}"
            )
        else:
            console.print(
                f"[green]started[/] streams worker, alert consumer\n"
                f"  live dashboard  {web}/dashboard/\n"
                f"  webhook sink    {sink.url}\n"
                "[yellow]the CPU engine (llama-cpp-python) is not installed yet[/]: `make demo` "
                f"builds it in the background (log: {ENGINE_LOG}); the inference worker and the "
                "gateway join the loop as soon as it imports"
            )
        # Readiness end to end before any traffic: every health endpoint, one chat answered.
        with console.status(
            "waiting for the services: health endpoints, then one chat through the gateway..."
        ):
            not_ready, first_chat_s = wait_ready(services, console.print, args.ready_timeout_s)
        if first_chat_s is not None:
            console.print(f"[green]ready[/]: first chat answered {first_chat_s:.1f} s after start")
        for name, why in not_ready.items():
            console.print(f"[red]not ready[/] {name}: {why}")
        up: dict[str, bool] = {}
        chat = ChatStats()
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
            deserializer=decoder_for(settings),
            dlq_producer=producer,
            topic_prefix=settings.topic_prefix,
            config={"auto.offset.reset": "latest", **quiet},
        )
        threads: list[threading.Thread] = []
        began = time.monotonic()
    except BaseException:
        for svc in services.values():
            _stop_process(svc.proc)
        sink.__exit__(None, None, None)
        if started_here and not args.keep_broker:
            kafka.stop()
        raise
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        # Ctrl-C ends the loop at its next turn instead of raising inside a Kafka client call
        # (a KeyboardInterrupt in the middle of a librdkafka flush surfaces as a SystemError).
        interrupted.set()
        stop.set()

    previous_sigint = signal.signal(signal.SIGINT, on_sigint)
    try:
        consumer.wait_assigned(30)
        threads.append(
            threading.Thread(
                target=run,
                name="simulator",
                daemon=True,
                args=(lambda schema, ev: producer.send(schema, ev), config),
                kwargs={"realtime": True, "live_time": True, "should_stop": stop.is_set},
            )
        )
        threads[-1].start()
        drift_at = config.drift.at_s if config.drift else None
        # Any ML model, not only the chatbot: a dispatch model's predictions and outcomes, whose
        # confidence and accuracy drift at the same moment.
        threads.append(
            threading.Thread(
                target=run_predictions,
                name="predictions",
                daemon=True,
                args=(
                    lambda schema, ev: producer.send(schema, ev),
                    PredictionSimConfig(
                        predictions=0,
                        rate=DEMO_PREDICTION_RATE,
                        outcome_delay_ms=2_000,
                        drift_at_s=drift_at,
                        drift=("confidence", "accuracy"),
                    ),
                ),
                kwargs={"realtime": True, "live_time": True, "should_stop": stop.is_set},
            )
        )
        threads[-1].start()
        chatting = False
        last_probe = 0.0
        last_engine_probe = time.monotonic()
        first_breach_s: float | None = None
        with Live(console=console, refresh_per_second=2) as live:
            while not stop.is_set() and (
                args.seconds <= 0 or time.monotonic() - began < args.seconds
            ):
                if not llm_ready and time.monotonic() - last_engine_probe >= 10:
                    last_engine_probe = time.monotonic()
                    if engine_available():
                        llm_ready = True
                        services.update(_start_llm(settings))
                        live.console.print(
                            f"[green]engine ready[/] {time.monotonic() - began:.0f} s into the "
                            f"demo: started the inference worker "
                            f"({services['inference'].url}/metrics) and the gateway "
                            f"({services['gateway'].url}/v1/chat/completions)"
                        )
                if time.monotonic() - last_probe >= 1:
                    last_probe = time.monotonic()
                    for name, svc in services.items():
                        if svc.proc.poll() is not None:
                            up[name] = False
                            revive(svc, live.console.print)
                        if not up.get(name):
                            up[name] = (
                                svc.ready(PROBES[name])
                                if name in PROBES
                                else svc.proc.poll() is None
                            )
                    if up.get("gateway") and up.get("inference") and not chatting:
                        chatting = True
                        threads.append(
                            threading.Thread(
                                target=chat_loop,
                                name="chatbot",
                                daemon=True,
                                args=(
                                    services["gateway"].url,
                                    DEMO_MODEL,
                                    chat,
                                    stop,
                                    args.chat_every_s,
                                ),
                            )
                        )
                        threads[-1].start()
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
                            if first_breach_s is None:
                                first_breach_s = time.monotonic() - began
                                live.console.print(_breach_timing(first_breach_s, e["signal"]))
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
                        s.satisfied += is_satisfied(e)
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
                        _loop_table(services, up, chat, sink),
                    )
                )
    except KeyboardInterrupt:
        interrupted.set()
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
        if interrupted.is_set():
            console.print("stopping...")
        stop.set()
        for t in threads:
            t.join(10)
        consumer.close()
        producer.close(raise_on_failure=False)
        try:
            dlq = dead_letters(bootstrap, settings.topic_prefix)
        except Exception as exc:  # the count is a report, never a reason to leave children
            console.print(f"could not count dead letters: {exc}")
            dlq = -1
        # Producers of events first, then the consumers of them.
        for name in ("gateway", "inference", "streams", "alerts"):
            if name in services:
                _stop_process(services[name].proc)
        sink.__exit__(None, None, None)
        if started_here and not args.keep_broker:
            with console.status("stopping Kafka..."):
                kafka.stop()
            console.print("broker stopped; nothing left running")
        else:
            console.print(f"broker left running at {bootstrap} (continuum broker stop)")
    turns = sum(s.turns for s in stats.values())
    console.print(
        f"consumed {turns} chat turns, {sum(s.feedback for s in stats.values())} feedback events, "
        f"{consumer.decoder.dead_lettered} dead-lettered; {chat.ok} chats answered through the "
        f"gateway ({chat.errors} failed); {sink.count} alert posts delivered to the webhook; "
        f"{len(breaches)} drift signals breached at the end; {dlq} dead letters on all topics"
    )
    if not llm_ready:
        console.print(
            f"[yellow]the CPU engine was still being built[/] ({ENGINE_LOG}): no chat was sent; "
            "the next `make demo` starts with the LLM services"
        )
    elif chat.ok == 0:
        why = "; ".join(f"{n}: {w}" for n, w in not_ready.items()) or chat.last or "no chat sent"
        gone = [
            f"{n} exited (code {s.proc.returncode})"
            for n, s in services.items()
            if s.proc.returncode not in (None, 0, -15)
        ]
        console.print(f"[red]no chat was answered[/]: {'; '.join([why, *gone])}")
    return 0
