"""``MLClient``: call any model served over HTTP, fall back to the caller's rules when it cannot
answer, and log every prediction and outcome to Kafka (the dispatch seed's MLClient and
PredictionLogger, as one SDK object beside :class:`~producers.producer.EventProducer`).

The model server speaks the seed's contract under one base URL (``/api/v2/dispatch`` for the
dispatch model): ``POST /predict`` with ``{"features": {...}}`` answers ``{"prediction": ...,
"confidence": 0..1, "model_version": ..., "features": {...}}`` (``prediction`` is required; the
optional ``features`` are the model's own feature vector, logged instead of the request's);
``POST /predict/batch`` with ``{"instances": [...]}`` answers ``{"predictions": [answer |
{"error": ...}, ...]}``; ``GET /health`` answers 200 when it can serve. ``parse`` adapts another
server's answers.

A call never raises because of the model: an exception, a timeout, an invalid answer or an open
circuit makes the caller's ``fallback`` answer, and the ``Prediction`` event says
``fallback_used`` with the reason. Logging never blocks the caller: events go through a bounded
queue to a background sender; when Kafka is slow and the queue is full, events are dropped and
counted (``dropped``, the ``continuum_mlclient_events_dropped_total`` metric and a warning per
interval), never silently.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import Counter, Gauge, Histogram

from producers.assignment import Route, VariantRouter
from producers.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from schemas.ids import stable_id

log = logging.getLogger(__name__)

# Why the fallback answered; the first word of every ``fallback_reason``.
ERROR, TIMEOUT, INVALID_OUTPUT, CIRCUIT_OPEN = "error", "timeout", "invalid_output", "circuit_open"
FALLBACK_KINDS = (ERROR, TIMEOUT, INVALID_OUTPUT, CIRCUIT_OPEN)
_RETRY_STATUS = (502, 503, 504)
_CIRCUIT_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

CALLS = Counter(
    "continuum_mlclient_predictions_total",
    "Predictions served by MLClient, by who answered (model, fallback, rules)",
    ["model", "source"],
)
FALLBACKS = Counter(
    "continuum_mlclient_fallbacks_total",
    "Predictions the fallback answered, by reason (error, timeout, invalid_output, circuit_open)",
    ["model", "reason"],
)
LATENCY = Histogram(
    "continuum_mlclient_latency_seconds",
    "Time of MLClient.predict, fallback included",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CIRCUIT = Gauge(
    "continuum_mlclient_circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", ["model"]
)
DROPPED = Counter(
    "continuum_mlclient_events_dropped_total",
    "Prediction/Outcome events dropped because the logging queue was full (Kafka too slow)",
    ["model"],
)


class ModelFailure(Exception):
    """The model could not answer: ``kind`` is one of :data:`FALLBACK_KINDS`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class ModelAnswer:
    """One prediction as the model server gave it."""

    prediction: Any
    confidence: float | None = None
    model_version: str | None = None
    features: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class FallbackAnswer:
    """What the caller's rules return (a bare value is taken as the prediction)."""

    prediction: Any
    confidence: float | None = None
    features: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PredictionResult:
    """What ``predict`` hands back: the answer, who gave it and why."""

    prediction_id: str
    prediction: Any
    confidence: float | None
    model_version: str
    phase: str
    fallback_used: bool
    fallback_reason: str | None
    latency_ms: float
    experiment_id: str | None = None
    variant: str | None = None
    features: Mapping[str, Any] = field(default_factory=dict)


def parse_answer(body: Any) -> ModelAnswer:
    """The seed's answer shape; raises :class:`ModelFailure` (invalid_output) naming the field."""
    if not isinstance(body, Mapping):
        raise ModelFailure(INVALID_OUTPUT, f"answer is {type(body).__name__}, expected an object")
    if "error" in body and "prediction" not in body:
        raise ModelFailure(INVALID_OUTPUT, f"model refused the row: {body['error']}")
    if body.get("prediction") is None:
        raise ModelFailure(INVALID_OUTPUT, "answer has no 'prediction' field")
    pred = body["prediction"]
    if not isinstance(pred, str | int | float) or isinstance(pred, bool):
        raise ModelFailure(INVALID_OUTPUT, f"'prediction' is {pred!r}, expected a number or label")
    conf = body.get("confidence")
    if conf is not None:
        if not isinstance(conf, int | float) or isinstance(conf, bool) or not 0 <= conf <= 1:
            raise ModelFailure(INVALID_OUTPUT, f"'confidence' is {conf!r}, expected 0..1")
        conf = float(conf)
    feats = body.get("features")
    if feats is not None and not isinstance(feats, Mapping):
        raise ModelFailure(INVALID_OUTPUT, f"'features' is {type(feats).__name__}, expected object")
    version = body.get("model_version")
    return ModelAnswer(pred, conf, str(version) if version is not None else None, feats)


def scalar_features(features: Mapping[str, Any]) -> dict[str, Any]:
    """The features a ``Prediction`` event can carry: null, boolean, number or string values."""
    return {
        str(k): v
        for k, v in features.items()
        if v is None or isinstance(v, bool | int | float | str)
    }


def prediction_event(
    prediction_id: str,
    model_version: str,
    *,
    model_name: str = "dispatch",
    phase: str | None = None,
    experiment_id: str | None = None,
    entity_id: str | None = None,
    features: Mapping[str, Any] | None = None,
    predicted_value: Any = None,
    confidence: Any = None,
    fallback_used: bool = False,
    fallback_reason: str | None = None,
    latency_ms: Any = None,
    metadata: Mapping[str, Any] | None = None,
    event_time: Any = None,
) -> dict[str, Any]:
    """The ``Prediction`` event of one prediction; its id is a function of the prediction id, so
    the same prediction logged twice (a retry, the seed's ``/log`` and MLClient) is one event."""
    return {
        "event_id": stable_id("prediction", prediction_id),
        "event_time": int(time.time() * 1000) if event_time is None else event_time,
        "prediction_id": prediction_id,
        "model_name": model_name,
        "model_version": model_version,
        "phase": phase,
        "experiment_id": experiment_id,
        "entity_id": entity_id,
        "features": dict(features or {}),
        "predicted_value": predicted_value,
        "confidence": confidence,
        "fallback_used": fallback_used,
        "fallback_reason": fallback_reason,
        "latency_ms": latency_ms,
        "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
    }


def outcome_event(
    prediction_id: str,
    model_version: str,
    *,
    experiment_id: str | None = None,
    variant: str | None = None,
    actual_value: Any = None,
    success: Any = None,
    metadata: Mapping[str, Any] | None = None,
    event_time: Any = None,
) -> dict[str, Any]:
    """The ``Outcome`` of a prediction (one per prediction: its id is the prediction's)."""
    if isinstance(actual_value, int) and not isinstance(actual_value, bool):
        actual_value = float(actual_value)
    return {
        "event_id": stable_id("outcome", prediction_id),
        "event_time": int(time.time() * 1000) if event_time is None else event_time,
        "prediction_id": prediction_id,
        "model_version": model_version,
        "experiment_id": experiment_id,
        "variant": variant,
        "actual_value": actual_value,
        "success": success,
        "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
    }


class EventLog:
    """A bounded queue in front of an :class:`~producers.producer.EventProducer`: ``put`` never
    blocks; a background thread sends. When the queue is full the event is dropped and counted."""

    def __init__(self, producer: Any, *, model: str, capacity: int = 10_000) -> None:
        self.producer = producer
        self.model = model
        self.queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(capacity)
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        self._warned_at = 0.0
        self._thread = threading.Thread(target=self._run, name="mlclient-events", daemon=True)
        self._thread.start()

    def put(self, schema: str, event: dict[str, Any]) -> bool:
        try:
            self.queue.put_nowait((schema, event))
            return True
        except queue.Full:
            self.dropped += 1
            DROPPED.labels(self.model).inc()
            now = time.monotonic()
            if now - self._warned_at >= 30:
                self._warned_at = now
                log.warning(
                    "mlclient %s: event queue full (%d), Kafka too slow: %d events dropped so far",
                    self.model,
                    self.queue.maxsize,
                    self.dropped,
                )
            return False

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            schema, event = item
            try:
                self.producer.send(schema, event)
                self.sent += 1
            except Exception as exc:  # an invalid event is a caller bug: said, never fatal here
                self.failed += 1
                log.error("mlclient %s: %s event not sent: %s", self.model, schema, exc)
            if self.queue.empty():
                self.producer.poll(0)

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued, then flush the producer (up to ``timeout``)."""
        deadline = time.monotonic() + timeout
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            log.error("mlclient %s: event queue did not drain within %.0fs", self.model, timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        left = self.producer.flush(max(0.0, deadline - time.monotonic()))
        if left or self.dropped:
            log.warning(
                "mlclient %s: %d events unacknowledged at close, %d dropped while running",
                self.model,
                left,
                self.dropped,
            )


class MLClient:
    """Predictions from a model server with fallback to rules, logged as ``Prediction`` events.

    ``fallback(features)`` is the caller's rules (the dispatch seed's "Fase 1"); it answers when
    the model cannot and, inside an experiment, for the arm whose version is ``rules_version``.
    ``producer`` (an ``EventProducer``) logs the events; without one nothing is logged.
    ``router`` (a :class:`VariantRouter`, e.g. fed by
    :class:`~producers.experiments.ExperimentFollower`) decides the phase per call with the
    assigners the gateway uses. ``timeout_s`` bounds each HTTP phase (connect, read);
    ``retries`` re-sends a call refused at connect or answered 502/503/504.
    """

    def __init__(
        self,
        base_url: str,
        *,
        fallback: Callable[[Mapping[str, Any]], Any],
        model_name: str = "dispatch",
        model_version: str | None = None,
        rules_version: str = "rules-v1",
        producer: Any = None,
        router: VariantRouter | None = None,
        timeout_s: float = 0.5,
        retries: int = 1,
        breaker: CircuitBreaker | None = None,
        health_interval_s: float | None = 10.0,
        pool_size: int = 16,
        queue_size: int = 10_000,
        parse: Callable[[Any], ModelAnswer] = parse_answer,
        remember: int = 100_000,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        self.model_name = model_name
        self.model_version = model_version
        self.rules_version = rules_version
        self.fallback = fallback
        self.router = router
        self.retries = retries
        self.parse = parse
        self.breaker = breaker or CircuitBreaker()
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            transport=transport,
        )
        self.events = (
            EventLog(producer, model=model_name, capacity=queue_size) if producer else None
        )
        self._recent: OrderedDict[str, tuple[str, str | None, str | None]] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()
        self.healthy: bool | None = None
        self.last_health: dict[str, Any] = {}
        self._stop = threading.Event()
        self._health_thread: threading.Thread | None = None
        CIRCUIT.labels(model_name).set(0)
        if health_interval_s:
            self._health_thread = threading.Thread(
                target=self._health_loop, args=(health_interval_s,), name="mlclient-health"
            )
            self._health_thread.daemon = True
            self._health_thread.start()

    # -- calls -------------------------------------------------------------------------------

    def _post(self, path: str, body: Any) -> Any:
        """One call with bounded retries; raises :class:`ModelFailure`."""
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                r = self.http.post(path, json=body)
            except httpx.TimeoutException as exc:
                raise ModelFailure(TIMEOUT, f"no answer within {self._timeout():g}s") from exc
            except httpx.TransportError as exc:
                if last:
                    raise ModelFailure(ERROR, f"{type(exc).__name__}: {exc}") from exc
                continue
            if r.status_code in _RETRY_STATUS and not last:
                continue
            if r.status_code >= 400:
                raise ModelFailure(ERROR, f"HTTP {r.status_code}: {r.text[:200]}")
            try:
                return r.json()
            except ValueError as exc:
                raise ModelFailure(INVALID_OUTPUT, f"answer is not JSON: {exc}") from exc
        raise AssertionError("unreachable")

    def _timeout(self) -> float:
        return float(self.http.timeout.read or 0)

    def _guarded(self, call: Callable[[], Any]) -> Any:
        """Run a model call through the circuit breaker."""
        if not self.breaker.allow():
            raise ModelFailure(
                CIRCUIT_OPEN,
                f"{self.breaker.failures} failures in a row; next probe within "
                f"{self.breaker.reset_after_s:g}s",
            )
        try:
            out = call()
        except Exception as exc:  # an invalid answer is the model's fault too: it counts
            self.breaker.failure()
            CIRCUIT.labels(self.model_name).set(_CIRCUIT_VALUE[self.breaker.state])
            if isinstance(exc, ModelFailure):
                raise
            raise ModelFailure(ERROR, f"{type(exc).__name__}: {exc}") from exc
        self.breaker.success()
        CIRCUIT.labels(self.model_name).set(0)
        return out

    def predict(
        self,
        features: Mapping[str, Any],
        *,
        unit_id: str | None = None,
        entity_id: str | None = None,
        prediction_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PredictionResult:
        """One prediction. ``unit_id`` is what an experiment assigns (a session, a customer;
        default the entity, else the prediction). Never raises because of the model."""
        start = time.perf_counter()
        pid = prediction_id or str(uuid.uuid4())
        route = self._route(unit_id or entity_id or pid)

        def model() -> ModelAnswer:
            return self.parse(self._post("/predict", {"features": dict(features)}))

        result = self._answer(pid, features, route, model, start)
        self._log(result, entity_id, metadata)
        return result

    def predict_batch(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        unit_ids: Sequence[str | None] | None = None,
        entity_ids: Sequence[str | None] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[PredictionResult]:
        """Many predictions in one call. A row the model refuses or answers badly falls back
        alone (its reason names the row); the rest are the model's."""
        start = time.perf_counter()
        n = len(rows)
        units = list(unit_ids or [None] * n)
        entities = list(entity_ids or [None] * n)
        if len(units) != n or len(entities) != n:
            raise ValueError(f"unit_ids/entity_ids must have {n} entries, one per row")
        pids = [str(uuid.uuid4()) for _ in rows]
        routes = [self._route(units[i] or entities[i] or pids[i]) for i in range(n)]
        to_model = [i for i in range(n) if not self._rules_route(routes[i])]
        answers: dict[int, ModelAnswer | ModelFailure] = {}
        if to_model:
            try:
                body = self._guarded(
                    lambda: self._post(
                        "/predict/batch", {"instances": [dict(rows[i]) for i in to_model]}
                    )
                )
                items = body.get("predictions") if isinstance(body, Mapping) else None
                if not isinstance(items, list) or len(items) != len(to_model):
                    got = len(items) if isinstance(items, list) else "no"
                    raise ModelFailure(
                        INVALID_OUTPUT,
                        f"batch answer has {got} predictions for {len(to_model)} rows",
                    )
                for i, item in zip(to_model, items, strict=True):
                    try:
                        answers[i] = self.parse(item)
                    except ModelFailure as exc:
                        answers[i] = ModelFailure(exc.kind, f"row {i}: {exc.detail}")
            except ModelFailure as exc:
                for i in to_model:
                    answers[i] = exc
        results = []
        for i in range(n):
            got = answers.get(i)

            def given(got: Any = got) -> ModelAnswer:
                if isinstance(got, ModelFailure):
                    raise got
                return got

            result = self._answer(pids[i], rows[i], routes[i], given, start, guarded=False)
            self._log(result, entities[i], metadata)
            results.append(result)
        return results

    def _route(self, unit: str) -> Route:
        if self.router is None:
            return Route(None)
        return self.router.route(None, unit, int(time.time() * 1000))

    def _rules_route(self, route: Route) -> bool:
        return route.experiment_id is not None and route.model == self.rules_version

    def _answer(
        self,
        pid: str,
        features: Mapping[str, Any],
        route: Route,
        model: Callable[[], ModelAnswer],
        start: float,
        *,
        guarded: bool = True,
    ) -> PredictionResult:
        reason = None
        answer: ModelAnswer | None = None
        if not self._rules_route(route):
            try:
                answer = self._guarded(model) if guarded else model()
            except ModelFailure as exc:
                reason = str(exc)
                FALLBACKS.labels(self.model_name, exc.kind).inc()
        if answer is not None:
            version = answer.model_version or self.model_version or route.model or "unknown"
            source, phase = "model", route.variant or "ml"
            pred, conf, feats = answer.prediction, answer.confidence, answer.features
        else:
            rules = self._rules(features)
            pred, conf, feats = rules.prediction, rules.confidence, rules.features
            if reason is None:  # the experiment's rules arm
                version, source, phase = self.rules_version, "rules", route.variant or "rules"
            else:  # the model's call failed: counted against the model
                version = self.model_version or route.model or "unknown"
                source, phase = "fallback", route.variant or self.rules_version
        CALLS.labels(self.model_name, source).inc()
        elapsed = time.perf_counter() - start
        LATENCY.labels(self.model_name).observe(elapsed)
        return PredictionResult(
            prediction_id=pid,
            prediction=pred,
            confidence=conf,
            model_version=version,
            phase=phase,
            fallback_used=reason is not None,
            fallback_reason=reason,
            latency_ms=round(elapsed * 1000, 3),
            experiment_id=route.experiment_id,
            variant=route.variant,
            features=scalar_features(feats if feats is not None else features),
        )

    def _rules(self, features: Mapping[str, Any]) -> FallbackAnswer:
        out = self.fallback(features)
        return out if isinstance(out, FallbackAnswer) else FallbackAnswer(out)

    # -- logging -----------------------------------------------------------------------------

    def _log(
        self, r: PredictionResult, entity_id: str | None, metadata: Mapping[str, str] | None
    ) -> None:
        with self._lock:
            self._recent[r.prediction_id] = (r.model_version, r.experiment_id, r.variant)
            if len(self._recent) > self._remember:
                self._recent.popitem(last=False)
        if self.events is None:
            return
        pred = r.prediction
        self.events.put(
            "Prediction",
            prediction_event(
                r.prediction_id,
                r.model_version,
                model_name=self.model_name,
                phase=r.phase,
                experiment_id=r.experiment_id,
                entity_id=entity_id,
                features=r.features,
                predicted_value=float(pred)
                if isinstance(pred, int | float)
                else None
                if pred is None
                else str(pred),
                confidence=r.confidence,
                fallback_used=r.fallback_used,
                fallback_reason=r.fallback_reason,
                latency_ms=r.latency_ms,
                metadata=metadata,
            ),
        )

    def log_outcome(
        self,
        prediction_id: str,
        *,
        success: bool | None = None,
        actual_value: float | str | None = None,
        model_version: str | None = None,
        experiment_id: str | None = None,
        variant: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Log what really happened for a prediction. Its model version and experiment arm are
        copied from the prediction (remembered for the last ``remember`` predictions of this
        client); for an older one, or one made by another process, pass ``model_version``
        (and the arm) — an outcome nobody can attribute is refused, not logged."""
        with self._lock:
            known = self._recent.get(prediction_id)
        if known is not None:
            model_version = model_version or known[0]
            experiment_id = experiment_id or known[1]
            variant = variant or known[2]
        if model_version is None:
            raise ValueError(
                f"outcome for prediction {prediction_id!r}: this client did not make it (or no "
                "longer remembers it), so pass model_version= (and experiment_id=/variant=)"
            )
        event = outcome_event(
            prediction_id,
            model_version,
            experiment_id=experiment_id,
            variant=variant,
            actual_value=actual_value,
            success=success,
            metadata=metadata,
        )
        if self.events is not None:
            self.events.put("Outcome", event)
        return event

    # -- health ------------------------------------------------------------------------------

    def check_health(self) -> bool:
        """Ask the server's ``/health``; a pass lets an open circuit probe at once."""
        try:
            r = self.http.get("/health")
            body = (
                r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            )
            ok = r.status_code == 200
        except (httpx.HTTPError, ValueError) as exc:
            ok, body = False, {"error": f"{type(exc).__name__}: {exc}"}
        if ok and self.model_version is None and isinstance(body, Mapping):
            version = body.get("model_version")
            if version:
                self.model_version = str(version)
        if ok and self.breaker.state == OPEN:
            self.breaker.healthy()
        if ok != self.healthy:
            log.log(
                logging.INFO if ok else logging.WARNING,
                "model server %s %s",
                self.http.base_url,
                "healthy" if ok else f"unhealthy: {body}",
            )
        self.healthy = ok
        self.last_health = dict(body) if isinstance(body, Mapping) else {}
        return ok

    def _health_loop(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.check_health()
            self._stop.wait(every_s)

    def status(self) -> dict[str, Any]:
        """The client's view: circuit, last health check, events sent and dropped."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "circuit": self.breaker.state,
            "consecutive_failures": self.breaker.failures,
            "healthy": self.healthy,
            "events_sent": self.events.sent if self.events else 0,
            "events_dropped": self.events.dropped if self.events else 0,
            "events_queued": self.events.queue.qsize() if self.events else 0,
        }

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self.events is not None:
            self.events.close(timeout)
        self.http.close()

    def __enter__(self) -> MLClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
