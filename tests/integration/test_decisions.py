"""Decisions on the real broker: a per-model threshold set through the CLI changes the next
window's verdict without a restart; a CRITICAL alert in probation rolls a promotion back; and
with the streams worker SIGKILLed at random points mid-traffic, every alert transition reaches
the webhook exactly once and the totals stay exact."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from continuum.demo.chat import DriftInjection, SimulatorConfig
from continuum.settings import Settings
from jobs.alert_consumer import AlertDelivery, Target
from jobs.notify import RetryPolicy
from schemas.serde import AvroDeserializer
from tests.integration.conftest import Broker, wait_for
from tests.integration.fakes import FakeSlack
from tests.integration.kafka_read import read_topic
from tests.integration.streams_worker import StreamsWorker
from tests.integration.traffic import START, Feed, produce, wait_exact, wait_part_way

pytestmark = pytest.mark.integration


def cli(broker: Broker, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "continuum.cli",
            *args,
            "--bootstrap-servers",
            broker.bootstrap,
            "--topic-prefix",
            prefix,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def records(broker: Broker, prefix: str, topic: str) -> list[dict[str, Any]]:
    return [
        AvroDeserializer().decode(v).record for v, _ in read_topic(broker.bootstrap, prefix + topic)
    ]


def _latency(worker: StreamsWorker) -> list[dict[str, Any]]:
    status, body = worker.get("/drift/history/?model=okla-v1.0&signal=latency_increase")
    return body["points"] if status == 200 else []


def test_a_threshold_set_through_the_cli_changes_the_next_verdict_live(
    broker: Broker, prefix: str, worker_factory
) -> None:
    worker = worker_factory()
    drifted = DriftInjection(at_s=40, kinds=("latency",))
    produce(broker, prefix, SimulatorConfig(turns=9000, rate=100, seed=31, drift=drifted))
    wait_for(
        lambda: any(p["breached"] for p in _latency(worker)),
        120,
        what=lambda: "a breached latency_increase:\n" + worker.tail(),
    )
    # Bad input first: nothing is written.
    bad = cli(broker, prefix, "thresholds", "set", "okla-v1.0", "latency_increase=-1", "nope=2")
    assert bad.returncode == 1
    assert "latency_increase='-1': expected a finite number >= 0" in bad.stderr
    assert "unknown threshold 'nope'" in bad.stderr
    unknown = cli(broker, prefix, "thresholds", "set", "okla-v9", "latency_increase=1")
    assert unknown.returncode == 1 and "unknown model 'okla-v9'" in unknown.stderr
    done = cli(
        broker, prefix, "thresholds", "set", "okla-v1.0", "latency_increase=5", "--reason", "test"
    )
    assert done.returncode == 0, done.stderr
    wait_for(
        lambda: worker.get("/thresholds/okla-v1.0/")[1]["sources"]["latency_increase"] == "model",
        30,
    )
    assert worker.get("/thresholds/okla-v1.0/")[1]["values"]["latency_increase"] == 5.0
    assert cli(broker, prefix, "thresholds", "list").stdout.startswith("okla-v1.0")
    # The same drift keeps coming; windows evaluated from now on use the model's threshold.
    more = SimulatorConfig(
        turns=6000,
        rate=100,
        seed=32,
        start_ms=START + 90_000,
        drift=DriftInjection(at_s=0, kinds=("latency",)),
    )
    produce(broker, prefix, more)

    def tuned() -> list[dict[str, Any]]:
        return [p for p in _latency(worker) if p["event_time"] > START + 110_000]

    wait_for(lambda: len(tuned()) >= 3, 120, what=lambda: str(_latency(worker)[-3:]))
    assert all(p["threshold"] == 5.0 and not p["breached"] for p in tuned())
    signals = [
        s
        for s in records(broker, prefix, "drift-signals")
        if s["signal"] == "latency_increase" and s["model_version"] == "okla-v1.0"
    ]
    late = [s for s in signals if s["window_end"] > START + 110_000]
    assert late and all(s["details"]["threshold_source"] == "model" for s in late)
    early = [s for s in signals if s["breached"]]
    assert early and all(s["details"]["threshold_source"] == "seed" for s in early)
    # The latency alert opened under the seed threshold is resolved by the owner.
    wait_for(
        lambda: any(
            a["dedup_key"] == "drift:okla-v1.0:latency_increase" and a["status"] == "RESOLVED"
            for a in records(broker, prefix, "alerts")
        ),
        60,
    )


def test_a_critical_alert_in_probation_rolls_the_promotion_back(
    broker: Broker, prefix: str, worker_factory
) -> None:
    """okla-v2.0 replaces okla-v1.0 by winning an experiment; its fallback rate then passes the
    critical level: the worker retires it and promotes okla-v1.0 again, once."""
    for version in ("okla-v1.0", "okla-v2.0"):
        assert cli(broker, prefix, "models", "register", version).returncode == 0
    for n, winner in ((1, "control"), (2, "treatment")):
        for action in ("create", "conclude"):
            extra = ["--winner", winner] if action == "conclude" else []
            r = cli(
                broker,
                prefix,
                "experiments",
                action,
                f"gate-{n}",
                "--control",
                "okla-v1.0",
                "--treatment",
                "okla-v2.0",
                *extra,
            )
            assert r.returncode == 0, r.stderr
        version = "okla-v1.0" if winner == "control" else "okla-v2.0"
        promoted = cli(broker, prefix, "models", "promote", version)
        assert promoted.returncode == 0, promoted.stderr
    worker = worker_factory()
    spike = DriftInjection(at_s=40, kinds=("fallback",), models=("okla-v2.0",), fallback_spike=0.4)
    produce(broker, prefix, SimulatorConfig(turns=9000, rate=100, seed=33, drift=spike))

    def states() -> dict[str, str]:
        status, body = worker.get("/models/")
        return {r["model_version"]: r["state"] for r in body["registry"]} if status == 200 else {}

    wait_for(
        lambda: states() == {"okla-v1.0": "PROMOTED", "okla-v2.0": "RETIRED"},
        120,
        what=lambda: f"rollback, registry {states()}:\n{worker.tail()}",
    )
    registry = records(broker, prefix, "model-registry")
    rolled = [r for r in registry if r["reason"].startswith("rolled back: CRITICAL")]
    assert [r["model_version"] for r in rolled] and {r["model_version"] for r in rolled} == {
        "okla-v2.0"
    }
    assert len({r["event_id"] for r in rolled}) == 1  # decided once (duplicates share the id)
    wait_for(
        lambda: any(
            a["title"] == "Rolled back okla-v2.0 to okla-v1.0"
            for a in records(broker, prefix, "alerts")
        ),
        60,
    )


def test_every_alert_transition_reaches_the_webhook_once_across_sigkills(
    broker: Broker, prefix: str, worker_factory, tmp_path: Path
) -> None:
    fake = FakeSlack()
    settings = Settings(bootstrap_servers=broker.bootstrap, topic_prefix=prefix, home=tmp_path)
    delivery = AlertDelivery(
        settings,
        Target.of("webhook", fake.url),
        group_id=f"{prefix}hook",
        policy=RetryPolicy(max_attempts=5, base_s=0.05, cap_s=0.2),
    )
    stop = threading.Event()

    def deliver() -> None:
        while not stop.is_set():
            delivery.poll_once(0.3)

    deliverer = threading.Thread(target=deliver, daemon=True)
    deliverer.start()
    worker = worker_factory()
    cfg = SimulatorConfig(
        turns=40_000,
        rate=1000,
        seed=41,
        drift=DriftInjection(at_s=15, kinds=("latency", "fallback")),
    )
    rng = random.Random(7)
    kills = 0
    with Feed(broker.bootstrap, prefix, cfg) as feed:
        for threshold in (rng.randint(3000, 9000), rng.randint(14_000, 22_000)):
            wait_part_way(worker, threshold)
            time.sleep(rng.random())  # anywhere inside a batch, an evaluation or a send
            worker.kill()
            kills += 1
            assert feed.alive(), "traffic ended before the kill: nothing was tested"
            worker = worker_factory()
        expected = feed.finish()
    wait_exact(worker, expected, 180)
    # Let the last windows be evaluated and their alerts delivered.
    wait_for(lambda: records(broker, prefix, "alerts"), 60)
    time.sleep(8)
    alerts = records(broker, prefix, "alerts")
    distinct = {a["event_id"]: a for a in alerts}
    wait_for(lambda: delivery.store.seen("webhook", distinct) == set(distinct), 60)
    stop.set()
    deliverer.join(10)
    delivery.close()
    fake.close()
    assert kills == 2
    # Each transition was posted at most once (alone, or collapsed into its key's next one).
    posted = [m["alert"]["event_id"] for m in fake.accepted]
    assert len(posted) == len(set(posted)), json.dumps(fake.accepted)[:2000]
    # Alerts from windows: one id per transition, and a key never opens twice without a
    # RESOLVED in between (a crash replays decisions, it never invents new ones).
    by_key: dict[str, list[dict[str, Any]]] = {}
    for a in sorted(distinct.values(), key=lambda a: a["event_time"]):
        if a["dedup_key"].startswith(("drift:", "rule:")):
            by_key.setdefault(a["dedup_key"], []).append(a)
    assert by_key, "no alert from the injected drift"
    for key, transitions in by_key.items():
        opened = [a["alert_id"] for a in transitions if a["details"]["transition"] == "opened"]
        assert len(opened) == len(set(opened)), key
        resolved = [a["alert_id"] for a in transitions if a["status"] == "RESOLVED"]
        assert len(resolved) == len(set(resolved)) and set(resolved) <= set(opened), key
        live = 0
        for a in transitions:
            if a["details"]["transition"] == "opened":
                assert live == 0, f"{key} opened twice: {transitions}"
                live = 1
            elif a["status"] == "RESOLVED":
                live = 0
