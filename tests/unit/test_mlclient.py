"""MLClient against an in-process HTTP transport (httpx.MockTransport): fallback on every failure
kind with its reason, the circuit breaker, batches with a bad row, experiments, and the events it
logs (validated by the real EventProducer over a fake Kafka client)."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from producers import EventProducer
from producers.assignment import VariantRouter
from producers.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from producers.experiments import experiment_event
from producers.mlclient import (
    CIRCUIT_OPEN,
    ERROR,
    INVALID_OUTPUT,
    TIMEOUT,
    EventLog,
    FallbackAnswer,
    MLClient,
    ModelFailure,
    parse_answer,
)
from schemas.ids import stable_id
from schemas.serde import AvroDeserializer
from tests.unit.fakes import FakeClient

FEATURES = {"distance_km": 2.5, "zone": "norte", "rain": None, "nested": {"x": 1}}


def rules(features: Any) -> FallbackAnswer:
    return FallbackAnswer("drv-rules", None, {"distance_km": features["distance_km"]})


class Server:
    """A model server whose behaviour the test switches: ok, error, timeout, invalid, down."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if request.url.path.endswith("/health"):
            if self.mode == "down":
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(200, json={"status": "HEALTHY", "model_version": "gbm-v2"})
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if self.mode == "error":
            return httpx.Response(500, text="boom")
        if self.mode == "invalid":
            return httpx.Response(200, json={"score": 0.3})
        if request.url.path.endswith("/batch"):
            import json

            rows = json.loads(request.content)["instances"]
            out: list[dict[str, Any]] = []
            for row in rows:
                if row.get("bad"):
                    out.append({"error": "zone is 'marte'"})
                else:
                    out.append(
                        {"prediction": "drv-1", "confidence": 0.9, "model_version": "gbm-v2"}
                    )
            return httpx.Response(200, json={"predictions": out})
        return httpx.Response(
            200,
            json={
                "prediction": "drv-7",
                "confidence": 0.91,
                "model_version": "gbm-v2",
                "features": {"distance_km": 1.2, "zone": "norte"},
            },
        )


def client(server: Server, **kw: Any) -> MLClient:
    kw.setdefault("health_interval_s", None)
    return MLClient(
        "http://model/api/v2/dispatch", fallback=rules, transport=httpx.MockTransport(server), **kw
    )


def test_a_model_answer_is_served_with_the_models_features() -> None:
    s = Server()
    with client(s) as c:
        r = c.predict(FEATURES, entity_id="d-1")
    assert (r.prediction, r.confidence, r.model_version) == ("drv-7", 0.91, "gbm-v2")
    assert not r.fallback_used and r.fallback_reason is None and r.phase == "ml"
    assert r.features == {"distance_km": 1.2, "zone": "norte"}
    assert s.calls == ["/api/v2/dispatch/predict"]


@pytest.mark.parametrize(
    ("mode", "kind", "detail"),
    [
        ("error", ERROR, "HTTP 500"),
        ("down", ERROR, "ConnectError"),
        ("timeout", TIMEOUT, "no answer within 0.5s"),
        ("invalid", INVALID_OUTPUT, "answer has no 'prediction' field"),
    ],
)
def test_every_failure_kind_falls_back_with_its_reason(mode: str, kind: str, detail: str) -> None:
    s = Server()
    s.mode = mode
    with client(s, model_version="gbm-v2") as c:
        r = c.predict(FEATURES)
    assert r.fallback_used and r.prediction == "drv-rules"
    assert r.fallback_reason is not None and r.fallback_reason.startswith(f"{kind}: ")
    assert detail in r.fallback_reason
    # Counted against the model that failed, answered by the rules' phase.
    assert (r.model_version, r.phase) == ("gbm-v2", "rules-v1")
    # Only errors at connect are retried (once); a timeout is not sent twice.
    assert len(s.calls) == (2 if mode == "down" else 1)


def test_the_circuit_opens_refuses_without_calling_then_probes_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10, clock=lambda: now[0])
    s = Server()
    s.mode = "error"
    with client(s, breaker=breaker, retries=0) as c:
        for _ in range(3):
            assert c.predict(FEATURES).fallback_reason.startswith(f"{ERROR}: ")
        assert breaker.state == OPEN and len(s.calls) == 3
        r = c.predict(FEATURES)
        assert r.fallback_reason.startswith(f"{CIRCUIT_OPEN}: ") and len(s.calls) == 3
        now[0] = 10.0  # reset time passed: one probe goes through, fails, opens again
        assert c.predict(FEATURES).fallback_reason.startswith(f"{ERROR}: ")
        assert breaker.state == OPEN and len(s.calls) == 4
        now[0] = 20.0
        s.mode = "ok"
        assert not c.predict(FEATURES).fallback_used
        assert breaker.state == CLOSED
    assert breaker.transitions == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_half_open_lets_one_probe_through_at_a_time() -> None:
    now = [0.0]
    b = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=lambda: now[0])
    b.failure()
    assert not b.allow()
    now[0] = 5
    assert b.allow() and not b.allow()  # the probe is out; the next caller falls back
    b.success()
    assert b.allow() and b.allow()


def test_a_passing_health_check_lets_an_open_circuit_probe_early() -> None:
    b = CircuitBreaker(failure_threshold=1, reset_after_s=3600)
    s = Server()
    with client(s, breaker=b) as c:
        b.failure()
        assert b.state == OPEN
        assert c.check_health() and b.state == HALF_OPEN
        assert c.model_version == "gbm-v2"  # learnt from /health
        s.mode = "down"
        assert not c.check_health() and c.healthy is False


def test_breaker_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="timeout_s"):
        MLClient("http://x", fallback=rules, timeout_s=0)


def test_a_batch_with_one_bad_row_serves_the_rest() -> None:
    s = Server()
    with client(s) as c:
        rs = c.predict_batch([{"distance_km": 1.0}, {"distance_km": 2.0, "bad": True}, {}])
    assert [r.fallback_used for r in rs] == [False, True, False]
    assert rs[1].fallback_reason == "invalid_output: row 1: model refused the row: zone is 'marte'"
    assert rs[1].prediction == "drv-rules" and rs[0].prediction == "drv-1"
    assert s.calls == ["/api/v2/dispatch/predict/batch"]


def test_a_failed_batch_falls_back_for_every_row() -> None:
    s = Server()
    s.mode = "timeout"
    with client(s) as c:
        rs = c.predict_batch([{"distance_km": 1.0}, {"distance_km": 2.0}])
    assert all(r.fallback_used and r.fallback_reason.startswith("timeout: ") for r in rs)


def test_parse_names_the_bad_field() -> None:
    with pytest.raises(ModelFailure, match="'confidence' is 1.5, expected 0..1"):
        parse_answer({"prediction": "a", "confidence": 1.5})
    with pytest.raises(ModelFailure, match="expected an object"):
        parse_answer([1, 2])
    with pytest.raises(ModelFailure, match="'prediction' is True"):
        parse_answer({"prediction": True})


def test_an_experiment_routes_the_rules_arm_to_the_rules_without_calling_the_model() -> None:
    router = VariantRouter()
    router.update(
        experiment_event("disp-ab", "rules-v1", "gbm-v2", split_percent=50.0, strategy="STICKY")
        | {"event_time": 1}
    )
    s = Server()
    with client(s, router=router) as c:
        rs = [c.predict(FEATURES, unit_id=f"cust-{i}") for i in range(200)]
    arms = {r.variant for r in rs}
    assert arms == {"control", "treatment"}
    for r in rs:
        assert r.experiment_id == "disp-ab" and r.phase == r.variant and not r.fallback_used
        if r.variant == "control":
            assert (r.model_version, r.prediction) == ("rules-v1", "drv-rules")
        else:
            assert (r.model_version, r.prediction) == ("gbm-v2", "drv-7")
    treated = sum(r.variant == "treatment" for r in rs)
    assert len(s.calls) == treated  # the control arm never called the server
    again = client(s, router=router)
    assert [again.predict(FEATURES, unit_id=f"cust-{i}").variant for i in range(200)] == [
        r.variant for r in rs
    ]  # sticky: a customer keeps the arm
    again.close()


def _decoded(fake: FakeClient) -> list[tuple[str, dict[str, Any]]]:
    serde = AvroDeserializer()
    out = []
    for topic, value, _key, _headers in fake.sent:
        d = serde.decode(value)
        out.append((topic, d.record))
    return out


def test_predictions_and_outcomes_are_logged_with_stable_ids_and_attribution() -> None:
    fake = FakeClient()
    producer = EventProducer("unused", client=fake, publish_schemas=False)
    s = Server()
    s.mode = "timeout"
    with client(s, producer=producer, model_version="gbm-v2") as c:
        r = c.predict(FEATURES, entity_id="d-9", prediction_id="p-1")
        out = c.log_outcome("p-1", success=True)
        with pytest.raises(ValueError, match="pass model_version="):
            c.log_outcome("p-unknown", success=False)
        c.log_outcome("p-old", success=False, model_version="gbm-v1")
    sent = _decoded(fake)
    assert [t for t, _ in sent] == ["predictions", "outcomes", "outcomes"]
    pred = sent[0][1]
    assert pred["event_id"] == stable_id("prediction", "p-1")
    assert pred["fallback_used"] and pred["fallback_reason"].startswith("timeout: ")
    assert pred["model_version"] == "gbm-v2" and pred["entity_id"] == "d-9"
    assert pred["features"] == {"distance_km": 2.5}  # the rules' features
    assert pred["latency_ms"] == r.latency_ms
    outcome = sent[1][1]
    assert outcome["event_id"] == stable_id("outcome", "p-1") == out["event_id"]
    assert (outcome["model_version"], outcome["success"]) == ("gbm-v2", True)
    assert sent[2][1]["model_version"] == "gbm-v1"


def test_the_log_never_blocks_the_caller_and_counts_what_it_drops() -> None:
    entered, release = threading.Event(), threading.Event()

    class SlowProducer:
        sent: list[Any] = []

        def send(self, schema: str, event: Any) -> None:
            entered.set()
            release.wait(10)
            self.sent.append(event)

        def poll(self, timeout: float = 0) -> int:
            return 0

        def flush(self, timeout: float = 0) -> int:
            return 0

    log = EventLog(SlowProducer(), model="m", capacity=2)
    assert log.put("Prediction", {"n": 0})
    assert entered.wait(5)  # the sender holds event 0, Kafka "slow"
    results = [log.put("Prediction", {"n": i}) for i in range(1, 6)]
    assert results == [True, True, False, False, False] and log.dropped == 3
    release.set()
    log.close(5)
    assert [e["n"] for e in SlowProducer.sent] == [0, 1, 2]
