"""Deterministic predictions of any ML model, the dispatch seed's driver assignment: ``Prediction``
events with features, confidence, fallback to rules and latency, their ``Outcome``s, an A/B test
between rules and the model, and drift injected at a chosen moment. Same seed, same events."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from continuum.demo.chat import experiment_event

PREDICTION_DRIFT_KINDS = ("confidence", "latency", "fallback", "accuracy", "nulls", "labels")
ZONES = ("norte", "sur", "este", "oeste", "centro")


@dataclass(frozen=True)
class PredictionSimConfig:
    """A dispatch model assigning drivers: ``Prediction`` events with features, confidence,
    fallback to rules and latency, and (for ``outcome_probability`` of them) an ``Outcome`` that
    says whether the assigned driver did the job. From ``drift_at_s`` simulated seconds on, the
    ``drift`` kinds change: confidence drops, latency rises, fallbacks and null features spike,
    accuracy falls, and the predicted labels concentrate on a few drivers. With
    ``experiment_id`` it is an A/B test (the dispatch seed's rules v1 against XGBoost v2):
    ``treatment_share`` of the predictions come from ``model_version`` (phase ``treatment``), the
    rest from ``control_version`` (phase ``control``), which is less confident and less accurate
    by ``control_gap``; outcomes carry the experiment and arm."""

    seed: int = 11
    rate: float = 50.0  # predictions per simulated second
    predictions: int = 1000  # 0 = endless
    start_ms: int = 1_767_225_600_000
    model_name: str = "dispatch"
    model_version: str = "xgb-v2"
    phase: str | None = "ml-v2"
    outcome_probability: float = 0.8
    outcome_delay_ms: int = 60_000
    accuracy: float = 0.9
    drift_at_s: float | None = None
    drift: tuple[str, ...] = PREDICTION_DRIFT_KINDS
    experiment_id: str | None = None
    control_version: str = "rules-v1"
    treatment_share: float = 0.5
    control_gap: float = 0.1

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0 predictions per second, got {self.rate!r}")
        for name in ("outcome_probability", "accuracy", "treatment_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        bad = [k for k in self.drift if k not in PREDICTION_DRIFT_KINDS]
        if bad:
            raise ValueError(
                f"unknown drift kind(s) {bad}; expected some of {', '.join(PREDICTION_DRIFT_KINDS)}"
            )


class PredictionSimulator:
    def __init__(self, config: PredictionSimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.predictions = 0
        self.outcomes = 0

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _drifting(self, t_s: float, kind: str) -> bool:
        c = self.config
        return c.drift_at_s is not None and t_s >= c.drift_at_s and kind in c.drift

    def experiment_event(self) -> dict[str, Any] | None:
        """The ``Experiment`` announcing the simulated A/B test, or None without one."""
        c = self.config
        if not c.experiment_id:
            return None
        return experiment_event(
            c.experiment_id,
            c.control_version,
            c.model_version,
            c.treatment_share,
            "RANDOM",
            c.start_ms,
            f"simulated {c.model_name} A/B test",
        )

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Predictions in event-time order, each followed by its outcome when it has one (the
        outcome's event time is ``outcome_delay_ms`` later)."""
        c, rng = self.config, self.rng
        i = 0
        while c.predictions == 0 or i < c.predictions:
            now_ms = c.start_ms + int(i * 1000 / c.rate)
            t_s = i / c.rate
            i += 1
            arm = None
            if c.experiment_id:
                arm = "treatment" if rng.random() < c.treatment_share else "control"
            gap = c.control_gap if arm == "control" else 0.0
            model = c.control_version if arm == "control" else c.model_version
            conf = min(1.0, max(0.0, rng.betavariate(18, 2.5) - gap))
            if self._drifting(t_s, "confidence"):
                conf = max(0.0, conf - 0.25)
            fallback = conf < 0.6 or (self._drifting(t_s, "fallback") and rng.random() < 0.2)
            latency = rng.lognormvariate(math.log(12.0), 0.3)
            if self._drifting(t_s, "latency"):
                latency *= 2.5
            null_p = 0.3 if self._drifting(t_s, "nulls") else 0.005
            drivers = 3 if self._drifting(t_s, "labels") else 20
            pid = f"pred-{c.seed}-{i:08d}"
            prediction = {
                "event_id": self._uuid(),
                "event_time": now_ms,
                "prediction_id": pid,
                "model_name": c.model_name,
                "model_version": model,
                "phase": arm or ("rules-v1" if fallback else c.phase),
                "experiment_id": c.experiment_id,
                "entity_id": f"dispatch-{i}",
                "features": {
                    "distance_km": round(rng.expovariate(1 / 4.0), 2),
                    "hour": (now_ms // 3_600_000) % 24,
                    "zone": rng.choice(ZONES),
                    "rain": None if rng.random() < null_p else rng.random() < 0.2,
                    "vip": rng.random() < 0.1,
                },
                "predicted_value": f"driver-{rng.randrange(drivers):02d}",
                "confidence": round(conf, 4),
                "fallback_used": fallback,
                "fallback_reason": "low confidence: rules assigned the driver"
                if fallback
                else None,
                "latency_ms": round(latency, 2),
                "metadata": {},
            }
            self.predictions += 1
            yield "Prediction", prediction
            if rng.random() < c.outcome_probability:
                accuracy = c.accuracy - gap - (0.35 if self._drifting(t_s, "accuracy") else 0.0)
                success = rng.random() < accuracy
                self.outcomes += 1
                yield (
                    "Outcome",
                    {
                        "event_id": self._uuid(),
                        "event_time": now_ms + c.outcome_delay_ms,
                        "prediction_id": pid,
                        "model_version": model,
                        "experiment_id": c.experiment_id,
                        "variant": arm,
                        "actual_value": prediction["predicted_value"] if success else "other",
                        "success": success,
                        "metadata": {},
                    },
                )


def run_predictions(
    send: Callable[[str, dict[str, Any]], Any],
    config: PredictionSimConfig,
    *,
    realtime: bool = False,
    live_time: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> PredictionSimulator:
    """Feed a prediction simulation to ``send`` (its ``Experiment`` first, if any). With
    ``realtime`` predictions are paced at ``config.rate`` per wall-clock second and each outcome
    is held back until its own time comes (``outcome_delay_ms`` after its prediction); with
    ``live_time`` event times start now."""
    if live_time:
        config = replace(config, start_ms=int(time.time() * 1000))
    sim = PredictionSimulator(config)
    started = time.monotonic()
    if (experiment := sim.experiment_event()) is not None:
        send("Experiment", experiment)
    held: deque[tuple[float, dict[str, Any]]] = deque()  # (due, outcome), due in order

    def send_due(now: float) -> None:
        while held and held[0][0] <= now:
            send("Outcome", held.popleft()[1])

    for schema, event in sim.events():
        if should_stop():
            return sim
        if realtime:
            due = started + (event["event_time"] - config.start_ms) / 1000
            if schema == "Outcome":
                held.append((due, event))
                continue
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            send_due(time.monotonic())
        send(schema, event)
    while held and not should_stop():
        time.sleep(max(0.0, min(0.5, held[0][0] - time.monotonic())))
        send_due(time.monotonic())
    return sim


def run_dispatch(
    client: Any,
    *,
    rate: float,
    should_stop: Callable[[], bool],
    drift_at_s: float | None = None,
    seed: int = 7,
) -> int:
    """Dispatches of Santo Domingo through an :class:`~producers.mlclient.MLClient` to the real
    model server, ``rate`` per second, each with its outcome drawn from the ground truth of the
    chosen driver; from ``drift_at_s`` on the traffic moves away from the training data (rain,
    drivers farther and less willing). Returns how many were sent."""
    from inference.dispatch.world import dispatch, success_probability

    rng = random.Random(seed)
    began = time.monotonic()
    n = 0
    while not should_stop():
        elapsed = time.monotonic() - began
        drift = drift_at_s is not None and elapsed >= drift_at_s
        req = dispatch(rng, int(time.time() * 1000), n, drift=drift)
        r = client.predict(req, entity_id=req["dispatch_id"])
        if r.features:
            ok = rng.random() < success_probability(r.features)
            client.log_outcome(r.prediction_id, success=ok)
        n += 1
        wait = began + n / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    return n
