"""The README's first command, as a newcomer runs it: `continuum demo` starts its own Kafka and
every service; the live dashboard shows the injected drift as a breach and an alert within the
time the README states; real chats are answered through the gateway; alerts reach the webhook;
Ctrl-C leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from continuum.localkafka import free_port
from tests.integration.browser import Browser

pytestmark = pytest.mark.integration
# README: "the dashboard shows the drift as a breach and an alert about 90 s after the broker is
# up" (drift injected at 40 s, 30 s windows every 5 s); the test allows some slack for CI.
README_SECONDS = 90
SLACK_S = 45


def _listening(url: str) -> bool:
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def _processes_with(home: Path) -> list[int]:
    """Pids whose environment points CONTINUUM_HOME at ``home`` (the demo's children)."""
    needle = f"CONTINUUM_HOME={home}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "environ").read_bytes().split(b"\0"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def test_demo_shows_drift_on_the_dashboard_and_stops_clean(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "CONTINUUM_HOME": str(home),
        "CONTINUUM_KAFKA_PORT": str(free_port()),
        "CONTINUUM_KAFKA_CONTROLLER_PORT": str(free_port()),
        "COLUMNS": "160",
    }
    env.pop("CONTINUUM_TOPIC_PREFIX", None)
    demo = subprocess.Popen(
        [sys.executable, "-m", "continuum.cli", "demo", "--drift-at", "40", "--seconds", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()

    def printed(pattern: str) -> str | None:
        m = re.search(pattern, "".join(lines))
        return m.group(1) if m else None

    try:
        deadline = time.monotonic() + 120
        while (dashboard := printed(r"live dashboard\s+(\S+)")) is None:
            assert demo.poll() is None, "demo exited:\n" + "".join(lines)
            assert time.monotonic() < deadline, "no dashboard URL printed:\n" + "".join(lines)
            time.sleep(0.5)
        broker_up = time.monotonic()  # the URLs are printed once Kafka and the topics are ready
        gateway = printed(r"OpenAI API\s+(http://[\d.:]+)")
        worker = printed(r"LLM metrics\s+(http://[\d.:]+)")
        assert gateway and worker
        while not _listening(dashboard):  # the streams worker is still starting
            assert demo.poll() is None, "demo exited:\n" + "".join(lines)
            assert time.monotonic() - broker_up < 90, "streams worker never served the page"
            time.sleep(0.5)
        with Browser() as browser:
            browser.open(dashboard)
            state = browser.wait(
                lambda: (
                    (s := browser.js("return window.continuum"))
                    and s["breachedPoints"] > 0
                    and s["alerts"] > 0
                    and s
                ),
                README_SECONDS + SLACK_S,
                "the dashboard to show a drift breach and an open alert",
                show="[window.continuum, document.getElementById('error').textContent]",
            )
            took = time.monotonic() - broker_up
            breached = browser.js(
                "return [...document.querySelectorAll('#drift .card.breached')]"
                ".map(c => c.dataset.signal)"
            )
        print(f"dashboard showed breaches {breached} and an alert {took:.0f} s after Kafka was up")
        assert state["experiments"] == 1 and state["abIntervals"] > 0
        # Let a few real chats and webhook posts happen, then Ctrl-C.
        deadline = time.monotonic() + 60
        while not re.search(r"\b[1-9]\d* ok /", "".join(lines[-400:])):
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        try:
            rc = demo.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            raise
        reader.join(10)
    out = "".join(lines)
    assert rc == 0, out[-3000:]
    assert "broker stopped; nothing left running" in out
    summary = re.search(
        r"(\d+) chats answered through the\s+gateway \((\d+) failed\); (\d+) alert posts", out
    )
    assert summary, out[-2000:]
    answered, _failed, posts = map(int, summary.groups())
    assert answered >= 1, out[-2000:]
    # Nothing but Avro events produced through the SDK reached any topic of the run.
    assert re.search(r"\b0 dead letters on all topics", out), out[-2000:]
    ready = re.search(r"first chat answered ([\d.]+) s after start", out)
    assert ready, out[-3000:]
    print(f"services ready, first chat answered {ready.group(1)} s after they started")
    assert posts >= 1, out[-2000:]
    assert not any(_listening(u) for u in (dashboard, gateway, worker))
    assert _processes_with(home) == []
