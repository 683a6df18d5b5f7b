"""MLClient with the real dispatch model server and the real broker: its predictions reach the
streams worker's views; killing the model server makes every call fall back (no caller sees an
exception) and raises HIGH_FALLBACK_RATE at the seed's critical rate; the alert resolves once the
server is back."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from continuum.settings import Settings
from inference.dispatch.rules import rules_answer
from inference.dispatch.world import dispatch, success_probability
from producers import EventProducer
from producers.assignment import VariantRouter
from producers.circuit import CircuitBreaker
from producers.experiments import ExperimentFollower, experiment_event
from producers.mlclient import MLClient, PredictionResult
from streams.logic.alerts import raise_request
from streams.logic.rollout import rollout_metadata
from tests.integration.conftest import Broker, wait_for
from tests.integration.model_server import ModelServerProc


class Traffic(threading.Thread):
    """Dispatches at a steady rate through the client, each with its outcome from the ground
    truth; records every result and any exception a caller would have seen."""

    def __init__(self, client: MLClient, per_s: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.client, self.every = client, 1 / per_s
        self.results: list[tuple[float, PredictionResult]] = []
        self.errors: list[BaseException] = []
        self.stop_event = threading.Event()
        self.drift = False  # traffic unlike the training data (rain, far drivers)

    def run(self) -> None:
        rng, n = random.Random(3), 0
        while not self.stop_event.is_set():
            req = dispatch(rng, int(time.time() * 1000), n, drift=self.drift)
            n += 1
            try:
                r = self.client.predict(req, entity_id=req["dispatch_id"])
                ok = r.features and rng.random() < success_probability(r.features)
                self.client.log_outcome(r.prediction_id, success=bool(ok))
                self.results.append((time.monotonic(), r))
            except BaseException as exc:  # the point: there must be none
                self.errors.append(exc)
            self.stop_event.wait(self.every)

    def since(self, t: float) -> list[PredictionResult]:
        return [r for at, r in self.results if at >= t]


def test_predictions_fall_back_when_the_model_server_dies_and_the_alert_follows(
    broker: Broker, prefix: str, worker_factory, tmp_path_factory
) -> None:
    model_dir: Path = tmp_path_factory.mktemp("models")
    server = ModelServerProc(model_dir)  # not `stack`: this test kills and restarts it
    wait_for(server.up, 120, 0.3, what=lambda: "model server up:\n" + server.tail())
    worker = worker_factory(window_s=10, hop_s=5, freeze_after=300)
    producer = EventProducer(broker.bootstrap, topic_prefix=prefix)
    client = MLClient(
        server.base_url,
        fallback=rules_answer,
        producer=producer,
        breaker=CircuitBreaker(failure_threshold=5, reset_after_s=1.0),
        health_interval_s=0.5,
        timeout_s=2.0,
    )
    traffic = Traffic(client)
    traffic.start()
    try:
        wait_for(lambda: client.model_version == "gbm-v2", 30, what="the model's version")

        def window() -> dict[str, Any] | None:
            status, body = worker.get("/predictions/gbm-v2/")
            return (body or {}).get("last_window") if status == 200 else None

        wait_for(
            lambda: (window() or {}).get("sample_size", 0) >= 100,
            90,
            what=lambda: f"a full window of predictions: {window()}\n{worker.tail()}",
        )
        assert window()["fallback_rate"] == 0.0  # type: ignore[index]

        def fallback_alerts() -> list[dict[str, Any]]:
            alerts = worker.get("/alerts/active/")[1]["alerts"]
            return [a for a in alerts if a["alert_type"] == "HIGH_FALLBACK_RATE"]

        assert fallback_alerts() == []
        server.kill()
        killed = time.monotonic()

        def rule_alert() -> dict[str, Any] | None:  # the seed's rule (the drift signal's too)
            return next(
                (
                    a
                    for a in fallback_alerts()
                    if a["dedup_key"] == "rule:gbm-v2:fallback_rate" and a["severity"] == "CRITICAL"
                ),
                None,
            )

        wait_for(
            lambda: rule_alert() is not None,
            90,
            what=lambda: f"a CRITICAL HIGH_FALLBACK_RATE: {worker.get('/alerts/active/')[1]}",
        )
        after = traffic.since(killed + 0.5)
        assert after and all(r.fallback_used for r in after)
        reasons = {r.fallback_reason.split(":")[0] for r in after if r.fallback_reason}
        assert reasons <= {"error", "circuit_open"} and "circuit_open" in reasons
        assert all(r.model_version == "gbm-v2" for r in after)  # counted against the model
        alert = rule_alert()
        assert alert is not None and alert["model_version"] == "gbm-v2"
        # The seed's monitoring API reads the same state.
        fallback = worker.get("/api/v4/monitoring/health/fallback")[1]
        assert fallback["models"]["gbm-v2"]["status"] == "UNHEALTHY"
        active = worker.get("/api/v4/monitoring/alerts/active")[1]["alerts"]
        assert alert["alert_id"] in {a["alert_id"] for a in active}
        assert alert["details"]["fallback_critical"] == "0.1"

        server = server.restart()
        wait_for(server.up, 60, 0.3, what=lambda: "model server back:\n" + server.tail())
        back = time.monotonic()
        wait_for(
            lambda: any(not r.fallback_used for r in traffic.since(back)),
            30,
            what="the client using the model again",
        )
        wait_for(
            lambda: fallback_alerts() == [],
            90,
            what=lambda: f"HIGH_FALLBACK_RATE resolved: {worker.get('/alerts/active/')[1]}",
        )
        history = worker.get("/alerts/history/")[1]["alerts"]
        kinds = [(a["alert_type"], a["status"]) for a in history]
        assert ("HIGH_FALLBACK_RATE", "RESOLVED") in kinds
        assert traffic.errors == []

        status, body = worker.get("/predictions/gbm-v2/")
        assert status == 200 and body["outcomes"]["outcomes"] > 100
    finally:
        traffic.stop_event.set()
        traffic.join(10)
        client.close()
        server.stop()


def test_live_features_are_compared_with_the_registered_training_metrics(
    broker: Broker, prefix: str, worker_factory, tmp_path_factory
) -> None:
    """`model-server --register` puts the version and its training metrics in the registry; the
    streams worker compares every window with them, feature by feature (PSI, KS, chi-squared):
    quiet on traffic like the training data, DRIFT_DETECTED once the traffic moves."""
    server = ModelServerProc(
        tmp_path_factory.mktemp("models"), register_on=(broker.bootstrap, prefix)
    )
    wait_for(server.up, 120, 0.3, what=lambda: "model server up:\n" + server.tail())
    assert any("registered gbm-v2 with its training metrics" in line for line in server.lines)
    worker = worker_factory(window_s=10, hop_s=5, freeze_after=300)
    producer = EventProducer(broker.bootstrap, topic_prefix=prefix)
    client = MLClient(server.base_url, fallback=rules_answer, producer=producer, timeout_s=2.0)
    traffic = Traffic(client)
    traffic.start()

    def training_signals() -> list[dict[str, Any]]:
        status, body = worker.get("/drift/gbm-v2/")
        sigs = (body or {}).get("signals", [])
        return [s for s in sigs if s.get("detector") == "training"] if status == 200 else []

    try:
        wait_for(
            # a window's signals reach the view one by one: wait for all of them
            lambda: (
                {
                    "feature_drift:distance_km",
                    "feature_drift:zone",
                    "feature_drift:rain",
                    "confidence_vs_training",
                }
                <= {s["signal"] for s in training_signals()}
            ),
            120,
            what=lambda: f"signals against training: {worker.get('/drift/gbm-v2/')}",
        )
        calm = training_signals()
        names = {s["signal"] for s in calm}
        assert {"feature_drift:zone", "feature_drift:rain", "confidence_vs_training"} <= names
        # 18 features less the clock ones (hour, weekday, peak, ETA), not compared with training.
        assert len([n for n in names if n.startswith("feature_drift:")]) == 14
        assert not [s["signal"] for s in calm if s["breached"]]
        ks = next(s for s in calm if s["signal"] == "feature_drift:distance_km")
        assert ks["details"]["test"] == "ks" and ks["threshold"] == 0.2
        assert ks["details"]["threshold_name"] == "feature_psi"

        traffic.drift = True
        drifted = time.time() * 1000

        def breached() -> set[str]:
            return {
                s["signal"]
                for s in training_signals()
                if s["breached"] and s["window_start"] >= drifted
            }

        wait_for(
            lambda: {"feature_drift:rain", "feature_drift:distance_km"} <= breached(),
            120,
            what=lambda: f"breached feature drift after {drifted}: {training_signals()}",
        )
        alerts = worker.get("/alerts/active/")[1]["alerts"]
        keys = {a["dedup_key"] for a in alerts if a["alert_type"] == "DRIFT_DETECTED"}
        assert "drift:gbm-v2:feature_drift:rain" in keys
    finally:
        traffic.stop_event.set()
        traffic.join(10)
        client.close()
        server.stop()


def test_a_gradual_rollout_advances_on_healthy_traffic_and_stops_on_a_critical_alert(
    broker: Broker, prefix: str, worker_factory, tmp_path_factory
) -> None:
    """WEIGHT_BASED with a schedule: the streams worker advances 10 -> 50 -> 100 % while the
    treatment is healthy, MLClient follows each step from the experiments topic; a second
    rollout stops at once on an injected CRITICAL alert for its treatment, and every call goes
    back to the control (the rules)."""
    server = ModelServerProc(tmp_path_factory.mktemp("models"))
    wait_for(server.up, 120, 0.3, what=lambda: "model server up:\n" + server.tail())
    worker = worker_factory(window_s=10, hop_s=5, freeze_after=300)
    settings = Settings(bootstrap_servers=broker.bootstrap, topic_prefix=prefix)
    producer = EventProducer(broker.bootstrap, topic_prefix=prefix)

    def start(exp_id: str, schedule: str, step_s: float) -> None:
        now = int(time.time() * 1000)
        producer.send(
            "Experiment",
            experiment_event(
                exp_id,
                "rules-v1",
                "gbm-v2",
                split_percent=float(schedule.split(",")[0]),
                strategy="WEIGHT_BASED",
                min_samples=20,
                metadata=rollout_metadata(schedule, step_s=step_s, now_ms=now),
            ),
        )
        producer.flush()

    router = VariantRouter()
    follower = ExperimentFollower(settings, router)
    follower.start()
    client = MLClient(
        server.base_url, fallback=rules_answer, producer=producer, router=router, timeout_s=2.0
    )
    traffic = Traffic(client)
    try:
        start("rollout-a", "10,50,100", 2.0)
        traffic.start()

        def split(exp_id: str) -> float | None:
            exp = router.experiments.get(exp_id)
            return exp["traffic_split"] if exp else None

        seen: list[float] = []

        def completed() -> bool:
            s = split("rollout-a")
            if s is not None and (not seen or seen[-1] != s):
                seen.append(s)
            return s == 100.0

        wait_for(completed, 90, what=lambda: f"rollout-a at 100 %: {seen} {worker.tail()}")
        assert seen == [10.0, 50.0, 100.0]
        meta = router.experiments["rollout-a"]["metadata"]
        assert meta["rollout_state"] == "completed" and meta["rollout_step"] == "2"
        status, ab = worker.get("/ab/rollout-a/")
        assert status == 200 and not ab["srm"]["mismatch"]

        start("rollout-b", "10,50", 3600.0)  # never advances on its own within the test
        wait_for(lambda: split("rollout-b") == 10.0, 30, what="rollout-b followed")
        producer.send(
            "Alert",
            raise_request(
                "HIGH_FALLBACK_RATE",
                "CRITICAL",
                "rule:gbm-v2:fallback_rate",
                "Fallback rate 40% on gbm-v2 (injected)",
                int(time.time() * 1000),
                model_version="gbm-v2",
            ),
            topic="alert-requests",
        )
        producer.flush()
        wait_for(
            lambda: split("rollout-b") == 0.0,
            60,
            what=lambda: f"rollout-b stopped: {worker.tail()}",
        )
        meta = router.experiments["rollout-b"]["metadata"]
        assert meta["rollout_state"] == "stopped"
        assert "CRITICAL HIGH_FALLBACK_RATE open for gbm-v2" in meta["rollout_reason"]
        stopped = time.monotonic()
        wait_for(lambda: len(traffic.since(stopped)) >= 50, 30, what="traffic after the stop")
        after = traffic.since(stopped)
        assert {(r.experiment_id, r.variant, r.model_version) for r in after} == {
            ("rollout-b", "control", "rules-v1")
        }
        assert traffic.errors == []
    finally:
        traffic.stop_event.set()
        traffic.join(10)
        follower.stop()
        client.close()
        server.stop()
