"""The live dashboard page in headless Chromium: served by the streams worker, it polls the JSON
views and draws the injected drift as a breach, the A/B intervals, the open alerts and health."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from continuum.demo.chat import DriftInjection, SimulatorConfig, run
from producers.producer import EventProducer
from tests.integration.browser import Browser
from tests.integration.conftest import Broker, wait_for
from tests.integration.streams_worker import StreamsWorker

pytestmark = pytest.mark.integration

SERIES = (56, 189, 248)  # --series, the drift lines
BREACH = (244, 63, 94)  # --breach, thresholds and breached points
AB_COLORS = ((34, 197, 94), (148, 163, 184), (244, 63, 94))  # better / not significant / worse


def count_color(img: Image.Image, box: dict, rgb: tuple[int, int, int], tol: int = 30) -> int:
    crop = img.crop((box["x"], box["y"], box["x"] + box["w"], box["y"] + box["h"])).convert("RGB")
    return sum(
        1 for px in crop.getdata() if all(abs(a - b) <= tol for a, b in zip(px, rgb, strict=True))
    )


def _wait_page(browser: Browser, worker: StreamsWorker, check) -> dict:
    try:
        return browser.wait(
            check,
            60,
            "the page to draw a breach, an alert and A/B intervals",
            show="[window.continuum, document.getElementById('error').textContent]",
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n/drift/: {worker.get('/drift/')}\n{worker.tail()}") from None


def test_dashboard_draws_drift_breach_ab_intervals_and_alerts(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    worker = StreamsWorker(broker.bootstrap, prefix, tmp_path / "home")
    try:
        wait_for(worker.ready, 90, what=lambda: "streams worker web server:\n" + worker.tail())
        cfg = SimulatorConfig(
            turns=6000,
            rate=100,
            seed=8,
            drift=DriftInjection(at_s=35, kinds=("latency", "fallback")),
        )
        with EventProducer(broker.bootstrap, topic_prefix=prefix) as p:
            run(p.send, cfg)

        def window_breach() -> bool:
            status, body = worker.get("/drift/")
            return status == 200 and any(
                s["breached"] and s["detector"] == "window"
                for sigs in body["models"].values()
                for s in sigs
            )

        wait_for(window_breach, 120, what=lambda: "a breached window signal:\n" + worker.tail())
        with Browser() as browser:
            browser.open(f"http://127.0.0.1:{worker.port}/dashboard/?poll_ms=1000")
            state = _wait_page(
                browser,
                worker,
                lambda: (
                    (s := browser.js("return window.continuum"))
                    and s["breachedPoints"] > 0
                    and s["alerts"] > 0
                    and s["abIntervals"] > 0
                    and s
                ),
            )
            assert state["driftCharts"] >= 5 and state["driftPoints"] > state["breachedPoints"]
            assert state["health"] in ("DEGRADED", "UNHEALTHY")
            breached = browser.js(
                "return [...document.querySelectorAll('#drift .card.breached')]"
                ".map(c => c.dataset.signal)"
            )
            assert "latency_increase" in breached
            rows = browser.js(
                "return [...document.querySelectorAll('#alerts tbody tr')].map(r => r.innerText)"
            )
            assert any("HIGH_FALLBACK_RATE" in r or "DRIFT_DETECTED" in r for r in rows)
            boxes = browser.js(
                "const box = c => { const r = c.getBoundingClientRect();"
                " return {x: Math.round(r.x), y: Math.round(r.y),"
                " w: Math.round(r.width), h: Math.round(r.height)}; };"
                "return {drift: [...document.querySelectorAll('#drift canvas')].map(box),"
                " ab: [...document.querySelectorAll('#ab canvas')].map(box)};"
            )
            png = browser.screenshot()
        (tmp_path / "dashboard.png").write_bytes(png)
        img = Image.open(io.BytesIO(png))
        # The pixels are really there: every drift chart has its line, the latency chart its red
        # threshold and breached points, each A/B plot its coloured intervals.
        visible = [b for b in boxes["drift"] if b["y"] + b["h"] <= img.height]
        assert len(visible) >= 5
        for b in visible:
            assert count_color(img, b, SERIES) > 100, f"no series drawn in {b}"
            assert count_color(img, b, BREACH) > 20, f"no threshold drawn in {b}"
        for b in boxes["ab"]:
            assert sum(count_color(img, b, c) for c in AB_COLORS) > 150, f"no intervals in {b}"
    finally:
        worker.stop()
