"""A first `make demo` does not wait for the CPU engine: without it the demo is ready once the
analytics services answer, and it says how long the first breached signal took."""

from __future__ import annotations

import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from continuum.demo import screen, services
from continuum.demo.screen import breach_timing
from continuum.demo.services import Service, wait_ready


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def health_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def sleeper(name: str, url: str, tmp: Path) -> Service:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    return Service(name, proc, url, tmp / f"{name}.log")


def test_without_the_engine_the_analytics_alone_make_the_demo_ready(
    health_url: str, tmp_path: Path
) -> None:
    services = {
        "streams": sleeper("streams", health_url, tmp_path),
        "alerts": sleeper("alerts", health_url, tmp_path),
    }
    try:
        problems, first_chat_s = wait_ready(services, print, deadline_s=20)
    finally:
        for s in services.values():
            s.proc.kill()
    assert problems == {} and first_chat_s is None


def test_the_first_breach_is_timed_from_make(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screen, "PROCESS_STARTED", 1000.0)
    monkeypatch.setattr(screen.time, "time", lambda: 1100.0)
    monkeypatch.setenv("CONTINUUM_DEMO_MAKE_STARTED", "940")
    line = breach_timing(48.0, "latency_p95_shift")
    assert "48 s after the traffic started" in line
    assert "100 s after the demo started" in line
    assert "160 s after `make demo` began" in line


def test_the_engine_probe_runs_in_a_fresh_interpreter() -> None:
    # The venv under test has the engine installed (make test builds it).
    assert services.engine_available() is True
