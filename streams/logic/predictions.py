"""Any ML model, not only the chatbot: statistics of ``Prediction`` and ``Outcome`` events (the
dispatch seed's prediction log and outcome tracking).

A prediction window is a :class:`PredictionStats`, a :class:`~streams.logic.turns.TurnStats`
with prediction semantics, so every drift signal, baseline, alert and retrain rule of the chat
turns applies unchanged: mean and variance of confidence, fallback rate (``fallback_used``), p95
latency and latency outliers, the distribution of predicted labels (string predictions; it takes
the place of the intent distribution, so its signal is ``intent_distribution_shift``), and data
quality as the share of predictions with a null feature, confidence or prediction. There are no
tokens, so no token signal. Outcomes are tallied per model version: accuracy is the share of
outcomes with ``success`` true among those that say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.logic.features import FeatureProfile
from streams.logic.turns import MIN_CONFIDENCE, TurnStats

# Nulls in these count towards the data-quality null rate, next to every null feature value.
PREDICTION_FIELDS = ("confidence", "predicted_value")


class PredictionStats(TurnStats):
    """Everything drift detection needs about a set of predictions, as mergeable data; with the
    profile of their features for per-feature drift against the training data."""

    def __init__(self) -> None:
        super().__init__()
        self.features = FeatureProfile()

    def update(self, pred: Mapping[str, Any]) -> None:
        self.n += 1
        self.fallbacks += bool(pred.get("fallback_used"))
        conf = pred.get("confidence")
        if conf is not None:
            self.confidence.update(conf)
            self.low_confidence += conf < MIN_CONFIDENCE
        latency = pred.get("latency_ms")
        if latency is not None:
            self.latency.update(latency)
        label = pred.get("predicted_value")
        if isinstance(label, str):
            self.intents[label] = self.intents.get(label, 0) + 1
        missing = False
        for f in PREDICTION_FIELDS:
            if f == "confidence" and pred.get("fallback_used"):
                continue  # rules answer without a confidence: not a data-quality problem
            if pred.get(f) is None:
                self.nulls[f] = self.nulls.get(f, 0) + 1
                missing = True
        for name, value in (pred.get("features") or {}).items():
            if value is None:
                key = f"features.{name}"
                self.nulls[key] = self.nulls.get(key, 0) + 1
                missing = True
        self.rows_with_null += missing
        self.features.update(str(pred.get("prediction_id", "")), pred.get("features") or {})
        self._span(pred.get("event_time"))

    def merge(self, other: TurnStats) -> PredictionStats:
        super().merge(other)
        if isinstance(other, PredictionStats):
            self.features.merge(other.features)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "feat": self.features.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PredictionStats:
        s = super().from_dict(d)
        assert isinstance(s, PredictionStats)
        s.features = FeatureProfile.from_dict(d.get("feat"))
        return s


class OutcomeTally:
    """Outcomes of one model version's predictions."""

    def __init__(self) -> None:
        self.n = 0
        self.success = 0
        self.failure = 0

    def update(self, outcome: Mapping[str, Any]) -> None:
        self.n += 1
        ok = outcome.get("success")
        if ok is True:
            self.success += 1
        elif ok is False:
            self.failure += 1

    def merge(self, other: OutcomeTally) -> OutcomeTally:
        self.n += other.n
        self.success += other.success
        self.failure += other.failure
        return self

    @property
    def judged(self) -> int:
        """Outcomes that say whether the prediction was right."""
        return self.success + self.failure

    @property
    def accuracy(self) -> float | None:
        return self.success / self.judged if self.judged else None

    def summary(self) -> dict[str, Any]:
        return {
            "outcomes": self.n,
            "success": self.success,
            "failure": self.failure,
            "unknown": self.n - self.judged,
            "accuracy": self.accuracy,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "ok": self.success, "ko": self.failure}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutcomeTally:
        t = cls()
        t.n, t.success, t.failure = int(d["n"]), int(d["ok"]), int(d["ko"])
        return t
