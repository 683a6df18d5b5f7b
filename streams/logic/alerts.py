"""Alert management: the dispatch seed's 8 types and 5 severities, configurable thresholds,
de-duplication and cool-down per key, open/resolved state, history and statistics.

``AlertManager`` is plain state (``to_dict``/``from_dict``) so a Faust table can carry it; every
method takes ``now_ms`` explicitly so behaviour is deterministic under test and replay.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from streams.logic.drift import (
    CONFIDENCE_DROP,
    FALLBACK_RATE_INCREASE,
    NULL_RATE,
    OUTLIERS,
    PERFORMANCE_DEGRADATION,
    SignalResult,
)

TYPES = (
    "DRIFT_DETECTED",
    "PERFORMANCE_DEGRADATION",
    "SERVICE_DOWN",
    "HIGH_FALLBACK_RATE",
    "LOW_CONFIDENCE",
    "DATA_QUALITY",
    "MEMORY_USAGE",
    "DATABASE_ERROR",
)
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # lower is more severe

RECOMMENDATIONS = {
    "confidence_drop": "Confidence fell: review recent low-confidence turns, check for new intents or "
    "prompt changes, and compare with the last evaluation run.",
    "fallback_rate_increase": "More fallback answers: inspect the unanswered queries (new topics, "
    "broken retrieval) and add them to the next retraining set.",
    "latency_increase": "p95 latency rose: check inference worker load, queue wait and GPU memory; "
    "scale workers or lower max_tokens.",
    "intent_distribution_shift": "Users ask about different things: refresh the baseline if the change "
    "is expected (campaign, season), else collect examples for retraining.",
    "token_usage_change": "Token usage changed: check prompt templates and answer length; costs and "
    "latency follow tokens.",
    "confidence_variance_change": "Confidence became less stable: look for a mixed population of "
    "queries or a partially deployed model.",
    "data_quality_null_rate": "Events arrive with missing fields: check the producer version and the "
    "inference worker's metadata.",
    "data_quality_outliers": "Latency outliers: look for timeouts or stuck requests.",
    "performance_degradation": "Performance (outcome accuracy, or effective confidence without "
    "outcomes) fell against the previous period: consider rolling back or retraining.",
    "change_point": "An abrupt change was detected online; confirm it on the windowed signals.",
    "SERVICE_DOWN": "No heartbeat from the inference workers: restart them and check the GPU node.",
    "LOW_CONFIDENCE": "Mean confidence is below the minimum: retrain or roll back the model.",
    "HIGH_FALLBACK_RATE": "Fallback rate above the limit: inspect unanswered queries.",
}


@dataclass(frozen=True)
class AlertThresholds:
    drift: float = 0.10  # relative change that counts as drift for non-chatbot signals
    fallback_warning: float = 0.05
    fallback_critical: float = 0.10
    min_confidence: float = 0.75
    service_timeout_s: float = 30.0
    cooldown_s: float = 900.0  # a repeat of an open alert within this is suppressed
    history_size: int = 500

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class AlertManager:
    def __init__(self, thresholds: AlertThresholds = AlertThresholds()) -> None:
        self.thresholds = thresholds
        self.open: dict[str, dict[str, Any]] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=thresholds.history_size)
        self.raised: Counter[str] = Counter()
        self.by_severity: Counter[str] = Counter()
        self.suppressed = 0
        self.resolved = 0

    # -- core -------------------------------------------------------------------------------

    def raise_alert(
        self,
        alert_type: str,
        severity: str,
        dedup_key: str,
        title: str,
        now_ms: int,
        *,
        message: str = "",
        model_version: str | None = None,
        signals: Iterable[Mapping[str, Any]] = (),
        recommendation: str | None = None,
        source: str = "streams",
        details: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """An Alert event to emit, or None when it repeats an open alert inside the cool-down
        without escalating its severity."""
        if alert_type not in TYPES:
            raise ValueError(
                f"unknown alert type {alert_type!r}; expected one of {', '.join(TYPES)}"
            )
        if severity not in SEVERITIES:
            raise ValueError(
                f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}"
            )
        current = self.open.get(dedup_key)
        if current is not None:
            escalated = _RANK[severity] < _RANK[current["severity"]]
            cooling = now_ms - current["last_sent_ms"] < self.thresholds.cooldown_s * 1000
            current["occurrences"] += 1
            if cooling and not escalated:
                self.suppressed += 1
                return None
            alert_id = current["alert_id"]
        else:
            alert_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"continuum-alert:{dedup_key}:{now_ms}"))
        event = {
            "event_id": str(uuid.uuid4()),
            "event_time": now_ms,
            "alert_id": alert_id,
            "alert_type": alert_type,
            "severity": severity,
            "status": "OPEN",
            "dedup_key": dedup_key,
            "title": title,
            "message": message,
            "source": source,
            "model_version": model_version,
            "signals": [dict(s) for s in signals],
            "recommendation": recommendation,
            "details": dict(details or {}),
        }
        self.open[dedup_key] = {
            "alert_id": alert_id,
            "alert_type": alert_type,
            "severity": severity,
            "title": title,
            "opened_ms": current["opened_ms"] if current else now_ms,
            "last_sent_ms": now_ms,
            "occurrences": current["occurrences"] if current else 1,
            "model_version": model_version,
        }
        self.raised[alert_type] += 1
        self.by_severity[severity] += 1
        self.history.append(brief(event))
        return event

    def resolve(
        self, dedup_key: str, now_ms: int, reason: str = "back within thresholds"
    ) -> dict[str, Any] | None:
        current = self.open.pop(dedup_key, None)
        if current is None:
            return None
        self.resolved += 1
        event = {
            "event_id": str(uuid.uuid4()),
            "event_time": now_ms,
            "alert_id": current["alert_id"],
            "alert_type": current["alert_type"],
            "severity": current["severity"],
            "status": "RESOLVED",
            "dedup_key": dedup_key,
            "title": f"Resolved: {current['title']}",
            "message": reason,
            "source": "streams",
            "model_version": current.get("model_version"),
            "signals": [],
            "recommendation": None,
            "details": {"open_for_ms": str(now_ms - current["opened_ms"])},
        }
        self.history.append(brief(event))
        return event

    # -- from inference-worker heartbeats ----------------------------------------------------

    def on_workers(
        self, heartbeats: Mapping[str, int], now_ms: int, forget_after_s: float = 3600.0
    ) -> list[dict[str, Any]]:
        """SERVICE_DOWN when workers stop sending heartbeats (the dispatch seed's service
        timeout): CRITICAL when none is alive, HIGH when some are silent; resolved once all
        are back. A worker silent for longer than ``forget_after_s`` is considered retired."""
        key = "service_down:inference"
        timeout_ms = self.thresholds.service_timeout_s * 1000
        known = {w: t for w, t in heartbeats.items() if now_ms - t <= forget_after_s * 1000}
        silent = sorted(w for w, t in known.items() if now_ms - t > timeout_ms)
        if not silent:
            ev = self.resolve(key, now_ms, "every inference worker is sending heartbeats")
            return [ev] if ev else []
        alive = len(known) - len(silent)
        severity = "CRITICAL" if alive == 0 else "HIGH"
        ages = {w: (now_ms - known[w]) / 1000 for w in silent}
        ev = self.raise_alert(
            "SERVICE_DOWN",
            severity,
            key,
            "No inference worker is answering"
            if alive == 0
            else f"{len(silent)} inference worker(s) silent",
            now_ms,
            message=", ".join(f"{w} silent {a:.0f}s" for w, a in ages.items())
            + f" (timeout {self.thresholds.service_timeout_s:.0f}s); {alive} alive",
            signals=[
                {
                    "name": f"heartbeat_age_s:{w}",
                    "current": a,
                    "baseline": None,
                    "threshold": self.thresholds.service_timeout_s,
                }
                for w, a in ages.items()
            ],
            recommendation=RECOMMENDATIONS["SERVICE_DOWN"],
        )
        return [ev] if ev else []

    # -- from drift signals -----------------------------------------------------------------

    def on_drift(
        self,
        model_version: str,
        results: Iterable[SignalResult],
        now_ms: int,
        variant: str | None = None,
    ) -> list[dict[str, Any]]:
        """Open an alert per breached signal, resolve those no longer breached."""
        out: list[dict[str, Any]] = []
        scope = model_version if variant is None else f"{model_version}/{variant}"
        for r in results:
            key = f"drift:{scope}:{r.signal}"
            if not r.breached:
                ev = self.resolve(key, now_ms)
                if ev:
                    out.append(ev)
                continue
            alert_type, severity = self.classify(r)
            ev = self.raise_alert(
                alert_type,
                severity,
                key,
                _title(r, scope),
                now_ms,
                model_version=model_version,
                message=f"{r.signal}: {r.value:.4g} vs baseline {_fmt(r.baseline)} (change {r.change:+.3g}, "
                f"threshold {r.threshold:+.3g})",
                signals=[
                    {
                        "name": r.signal,
                        "current": r.value,
                        "baseline": r.baseline,
                        "threshold": r.threshold,
                    }
                ],
                recommendation=RECOMMENDATIONS.get(r.signal),
                details=r.details,
            )
            if ev:
                out.append(ev)
        return out

    def classify(self, r: SignalResult) -> tuple[str, str]:
        t = self.thresholds
        if r.signal == FALLBACK_RATE_INCREASE:
            if r.value >= t.fallback_critical:
                return "HIGH_FALLBACK_RATE", "CRITICAL"
            return "HIGH_FALLBACK_RATE", "HIGH" if r.value >= t.fallback_warning else "MEDIUM"
        if r.signal == CONFIDENCE_DROP and r.value < t.min_confidence:
            return "LOW_CONFIDENCE", "HIGH"
        if r.signal in (NULL_RATE, OUTLIERS):
            return "DATA_QUALITY", "MEDIUM"
        if r.signal == PERFORMANCE_DEGRADATION:
            return "PERFORMANCE_DEGRADATION", "HIGH"
        severe = r.threshold and abs(r.change) >= 2 * abs(r.threshold)
        return "DRIFT_DETECTED", "HIGH" if severe else "MEDIUM"

    # -- views --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "open": len(self.open),
            "open_by_severity": dict(Counter(a["severity"] for a in self.open.values())),
            "raised_by_type": dict(self.raised),
            "raised_by_severity": dict(self.by_severity),
            "suppressed": self.suppressed,
            "resolved": self.resolved,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "history": list(self.history),
            "raised": dict(self.raised),
            "sev": dict(self.by_severity),
            "suppressed": self.suppressed,
            "resolved": self.resolved,
        }

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any] | None, thresholds: AlertThresholds = AlertThresholds()
    ) -> AlertManager:
        m = cls(thresholds)
        if d:
            m.open = dict(d.get("open", {}))
            m.history.extend(d.get("history", []))
            m.raised.update(d.get("raised", {}))
            m.by_severity.update(d.get("sev", {}))
            m.suppressed, m.resolved = int(d.get("suppressed", 0)), int(d.get("resolved", 0))
        return m


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _title(r: SignalResult, scope: str) -> str:
    if r.signal in ("fallback_rate_increase",):
        return f"Fallback rate {r.value:.1%} (+{r.change:.1f} pp) on {scope}"
    if r.signal == "intent_distribution_shift":
        return f"Intent mix shifted (KL {r.value:.2f}) on {scope}"
    if r.baseline:
        return f"{r.signal.replace('_', ' ').capitalize()}: {r.change:+.0%} on {scope}"
    return f"{r.signal.replace('_', ' ').capitalize()}: {r.value:.3g} on {scope}"


BRIEF_KEYS = (
    "alert_id",
    "event_time",
    "alert_type",
    "severity",
    "status",
    "dedup_key",
    "title",
    "model_version",
)
DETAIL_KEYS = ("message", "recommendation", "signals")


def brief(event: Mapping[str, Any], *, detailed: bool = False) -> dict[str, Any]:
    """The fields of an Alert event that history and views keep."""
    keys = BRIEF_KEYS + DETAIL_KEYS if detailed else BRIEF_KEYS
    return {k: event.get(k) for k in keys}
