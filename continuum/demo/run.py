"""The newcomer's demo, the whole loop on this machine: local Kafka up, topics created; the
streams worker, the inference worker (llama.cpp + SmolLM2 on CPU) and its OpenAI-compatible
gateway, and the alert consumer posting to a local webhook sink started as child processes;
simulated chat traffic with an A/B test and drift injected part-way, plus real chats through the
gateway; summarised live in the terminal, with the live dashboard page served by the streams
worker. Ctrl-C (or --seconds) stops everything it started."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live

from continuum.admin import TopicAdmin
from continuum.demo.chat import SimulatorConfig, run
from continuum.demo.chatbot import ChatStats, chat_loop
from continuum.demo.dispatch import run_dispatch
from continuum.demo.screen import ArmStats, alerts_table, breach_timing, loop_table, traffic_table
from continuum.demo.services import (
    DEMO_MODEL,
    ENGINE_LOG,
    PROBES,
    WebhookSink,
    dead_letters,
    engine_available,
    revive,
    start_llm,
    start_services,
    stop_process,
    wait_ready,
)
from continuum.localkafka import LocalKafka
from continuum.settings import Settings
from inference.dispatch.rules import rules_answer
from producers.circuit import CircuitBreaker
from producers.consumer import EventConsumer
from producers.mlclient import MLClient
from producers.producer import EventProducer
from producers.schema_topic import decoder_for
from streams.logic.abtest import is_satisfied

DEMO_PREDICTION_RATE = 20.0  # dispatches per second through MLClient, next to the chat traffic


@dataclass(frozen=True)
class DemoConfig:
    """How the demo runs (the traffic it simulates is a :class:`SimulatorConfig`)."""

    seconds: float = 90.0  # run this long (0 = until Ctrl-C)
    keep_broker: bool = False  # leave the broker running afterwards
    chat_every_s: float = 4.0  # seconds between real chats through the gateway
    ready_timeout_s: float = 180.0  # longest wait for every service and a first chat
    model_down_at_s: float | None = None  # kill the dispatch model server this far in ...
    model_down_s: float = 30.0  # ... for this long: MLClient falls back to the rules


def run_demo(settings: Settings, demo: DemoConfig, config: SimulatorConfig) -> int:
    """Run the demo; ``config``: the chat traffic to simulate."""
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
    services = start_services(settings, sink.url, llm=llm_ready)
    try:  # until the main loop's own try: a failure or Ctrl-C here must not leave children
        web = services["streams"].url
        if llm_ready:
            console.print(
                f"[green]started[/] streams worker, inference worker, gateway, alert consumer, "
                f"model server\n"
                f"  live dashboard  {web}/dashboard/\n"
                f"  dispatch model  {services['model'].url}/predict\n"
                f"  OpenAI API      {services['gateway'].url}/v1/chat/completions\n"
                f"  LLM metrics     {services['inference'].url}/metrics\n"
                f"  webhook sink    {sink.url}"
            )
        else:
            console.print(
                f"[green]started[/] streams worker, alert consumer, model server\n"
                f"  live dashboard  {web}/dashboard/\n"
                f"  dispatch model  {services['model'].url}/predict\n"
                f"  webhook sink    {sink.url}\n"
                "[yellow]the CPU engine (llama-cpp-python) is not installed yet[/]: `make demo` "
                f"builds it in the background (log: {ENGINE_LOG}); the inference worker and the "
                "gateway join the loop as soon as it imports"
            )
        # Readiness end to end before any traffic: every health endpoint, one chat answered.
        with console.status(
            "waiting for the services: health endpoints, then one chat through the gateway..."
        ):
            not_ready, first_chat_s = wait_ready(services, console.print, demo.ready_timeout_s)
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
            stop_process(svc.proc)
        sink.__exit__(None, None, None)
        if started_here and not demo.keep_broker:
            kafka.stop()
        raise
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        # Ctrl-C ends the loop at its next turn instead of raising inside a Kafka client call
        # (a KeyboardInterrupt in the middle of a librdkafka flush surfaces as a SystemError).
        interrupted.set()
        stop.set()

    previous_sigint = signal.signal(signal.SIGINT, on_sigint)
    dispatch_client: MLClient | None = None
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
        # Any ML model, not only the chatbot: dispatches through MLClient to the real model
        # server (fallback to the rules when it cannot answer), their traffic moving away from
        # the training data at the same moment as the chat drift.
        dispatch_client = MLClient(
            services["model"].url,
            fallback=rules_answer,
            producer=producer,
            timeout_s=1.0,
            breaker=CircuitBreaker(failure_threshold=5, reset_after_s=2.0),
            health_interval_s=1.0,
        )
        threads.append(
            threading.Thread(
                target=run_dispatch,
                name="dispatch",
                daemon=True,
                args=(dispatch_client,),
                kwargs={
                    "rate": DEMO_PREDICTION_RATE,
                    "should_stop": stop.is_set,
                    "drift_at_s": drift_at,
                },
            )
        )
        threads[-1].start()
        model_down_until: float | None = None
        chatting = False
        last_probe = 0.0
        last_engine_probe = time.monotonic()
        first_breach_s: float | None = None
        with Live(console=console, refresh_per_second=2) as live:
            while not stop.is_set() and (
                demo.seconds <= 0 or time.monotonic() - began < demo.seconds
            ):
                if not llm_ready and time.monotonic() - last_engine_probe >= 10:
                    last_engine_probe = time.monotonic()
                    if engine_available():
                        llm_ready = True
                        services.update(start_llm(settings))
                        live.console.print(
                            f"[green]engine ready[/] {time.monotonic() - began:.0f} s into the "
                            f"demo: started the inference worker "
                            f"({services['inference'].url}/metrics) and the gateway "
                            f"({services['gateway'].url}/v1/chat/completions)"
                        )
                elapsed = time.monotonic() - began
                if (
                    demo.model_down_at_s is not None
                    and model_down_until is None
                    and elapsed >= demo.model_down_at_s
                ):
                    model_down_until = time.monotonic() + demo.model_down_s
                    services["model"].proc.kill()
                    live.console.print(
                        f"[yellow]model server killed[/] {elapsed:.0f} s into the demo: every "
                        f"dispatch falls back to the rules for {demo.model_down_s:.0f} s "
                        "(HIGH_FALLBACK_RATE follows)"
                    )
                if model_down_until is not None and time.monotonic() >= model_down_until > 0:
                    model_down_until = 0.0  # back once; a later crash is revived as usual
                    services["model"].restart()
                    services["model"].restarts = 0
                    live.console.print("[green]model server restarted[/]: the model answers again")
                if time.monotonic() - last_probe >= 1:
                    last_probe = time.monotonic()
                    for name, svc in services.items():
                        if name == "model" and model_down_until:  # held down on purpose
                            continue
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
                                    demo.chat_every_s,
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
                                live.console.print(breach_timing(first_breach_s, e["signal"]))
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
                        traffic_table(
                            stats,
                            consumer.decoder.dead_lettered,
                            time.monotonic() - began,
                            drift_at,
                        ),
                        alerts_table(breaches, alerts, web),
                        loop_table(services, up, chat, sink),
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
        if dispatch_client is not None:
            dispatch_client.close(10)
        consumer.close()
        producer.close(raise_on_failure=False)
        try:
            dlq = dead_letters(bootstrap, settings.topic_prefix)
        except Exception as exc:  # the count is a report, never a reason to leave children
            console.print(f"could not count dead letters: {exc}")
            dlq = -1
        # Producers of events first, then the consumers of them.
        for name in ("gateway", "inference", "model", "streams", "alerts"):
            if name in services:
                stop_process(services[name].proc)
        sink.__exit__(None, None, None)
        if started_here and not demo.keep_broker:
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
