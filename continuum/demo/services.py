"""The demo's child processes (streams worker, alert consumer, dispatch model server, inference
worker, gateway): started
with the demo's settings, probed until ready, revived when they exit, stopped in order; and the
local webhook that stands in for Slack."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from continuum import kafka as clients
from continuum.localkafka import free_port
from continuum.settings import Settings

DEMO_MODEL = "okla-smollm2-demo"  # what the CPU inference worker reports serving


def port(preferred: int) -> int:
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


def spawn(
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


PROBES = {"streams": "/health/", "inference": "/health", "gateway": "/health", "model": "/health"}


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


def engine_available() -> bool:
    """Whether the CPU engine (llama-cpp-python) imports in a fresh interpreter: on a first run
    `make demo` builds it in the background, and the demo attaches the LLM services once it can."""
    probe = subprocess.run(
        [sys.executable, "-c", "import llama_cpp"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


def start_services(settings: Settings, sink_url: str, *, llm: bool = True) -> dict[str, Service]:
    """Streams worker (demo-sized windows: 30 s every 5 s), the alert consumer posting to the
    sink and the dispatch model server (registered with its training metrics); with ``llm``, the
    inference worker on the CPU engine and the gateway too."""
    web = port(6066)
    services = {
        "streams": spawn(
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
        "alerts": spawn(
            settings,
            "alerts",
            ["alerts", "webhook", "--group-id", f"continuum-demo-alerts-{os.getpid()}"],
            sink_url,
            env={"CONTINUUM_WEBHOOK_URL": sink_url},
        ),
    }
    model = port(8600)
    services["model"] = spawn(
        settings,
        "model",
        ["model-server", "--port", str(model), "--register"],
        f"http://127.0.0.1:{model}/api/v2/dispatch",
    )
    if llm:
        services.update(start_llm(settings))
    return services


def start_llm(settings: Settings) -> dict[str, Service]:
    """The inference worker (llama.cpp + the bundled SmolLM2, on CPU) and the gateway."""
    gw, wk = port(8000), port(8001)
    return {
        "inference": spawn(
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
        "gateway": spawn(
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


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
