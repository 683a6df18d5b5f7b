"""Prometheus metrics of the streams worker, served at /metrics by the Faust web server."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from streams.logic.abtest import is_satisfied

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO")
# The seed's 11 latency buckets (ms) and confidence in steps of 0.05 from 0.5.
LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000, 30000, 60000)
CONFIDENCE_BUCKETS = (0.3, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)


class StreamsMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # process_* (RSS/VMS, CPU, open fds): the seed's system-resources panels read these.
        ProcessCollector(registry=r)
        self.events = Counter(
            "continuum_events_processed_total",
            "Events decoded and folded, by record type",
            ["type"],
            registry=r,
        )
        self.dlq = Counter(
            "continuum_dlq_records_total",
            "Records sent to a dead-letter topic",
            ["topic"],
            registry=r,
        )
        self.duplicates = Counter(
            "continuum_duplicate_events_total",
            "Events skipped because an event with the same id was already folded (a redelivered "
            "inference request, a producer retry outside idempotence)",
            ["schema"],
            registry=r,
        )
        self.replays_skipped = Counter(
            "continuum_replayed_events_skipped_total",
            "Events skipped because their partial already held them (replay after a crash)",
            registry=r,
        )
        self.late = Counter(
            "continuum_late_turns_total",
            "Turns (and predictions, outcomes) older than the drift retention (window + 2 hops) "
            "behind their partition's newest: kept out of the windows (A/B, feedback and "
            "outcome totals still count them)",
            registry=r,
        )
        self.unattributed = Counter(
            "continuum_unattributed_outcomes_total",
            "Outcomes without a model_version: not counted in any model's accuracy",
            registry=r,
        )
        self.lag = Gauge(
            "continuum_consumer_lag",
            "Records behind the end of the input topics",
            ["topic"],
            registry=r,
        )
        self.drift_value = Gauge(
            "continuum_drift_value",
            "Latest value of each drift signal",
            ["model_version", "signal"],
            registry=r,
        )
        self.drift_change = Gauge(
            "continuum_drift_change",
            "Latest compared change of each drift signal",
            ["model_version", "signal"],
            registry=r,
        )
        self.drift_breached = Gauge(
            "continuum_drift_breached",
            "1 when the signal breaches its threshold",
            ["model_version", "signal"],
            registry=r,
        )
        self.drift_threshold = Gauge(
            "continuum_drift_threshold",
            "Threshold of each drift signal",
            ["model_version", "signal"],
            registry=r,
        )
        self.alerts_open = Gauge(
            "continuum_alerts_open", "Open alerts by severity", ["severity"], registry=r
        )
        self.alerts_raised = Counter(
            "continuum_alerts_raised_total",
            "Alerts opened, by type and severity",
            ["type", "severity"],
            registry=r,
        )
        self.ab_samples = Gauge(
            "continuum_ab_samples",
            "A/B sample counts",
            ["experiment", "variant", "kind"],
            registry=r,
        )
        self.retrain_triggers = Counter(
            "continuum_retrain_triggers_total",
            "Retrain triggers emitted",
            ["model_version", "reason"],
            registry=r,
        )
        # What the chat turns themselves say (the seed's "Intents y Calidad" section), for every
        # turn this worker folds: summed over workers in Prometheus.
        self.turns = Counter(
            "continuum_turns_total",
            "Chat turns folded, by model version and intent",
            ["model_version", "intent"],
            registry=r,
        )
        self.fallbacks = Counter(
            "continuum_fallback_turns_total",
            "Chat turns answered with the fallback",
            ["model_version"],
            registry=r,
        )
        self.confidence = Histogram(
            "continuum_turn_confidence",
            "Intent confidence of chat turns",
            ["model_version"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "continuum_turn_latency_ms",
            "End-to-end latency of chat turns in ms, as the chatbot service measured it",
            ["model_version"],
            buckets=LATENCY_BUCKETS_MS,
            registry=r,
        )
        self.feedback = Counter(
            "continuum_feedback_total",
            "Feedback events, by model version, category and whether the user was satisfied",
            ["model_version", "category", "satisfied"],
            registry=r,
        )
        self.health = Gauge(
            "continuum_health_status", "0 healthy, 1 degraded, 2 unhealthy", registry=r
        )
        for s in SEVERITIES:
            self.alerts_open.labels(s).set(0)

    def observe(self, schema: str, events: Iterable[Mapping[str, Any]]) -> None:
        """Count one folded batch: label tallies first, one increment per label set."""
        counts: Tally[tuple[str, ...]] = Tally()
        fallbacks: Tally[str] = Tally()
        children: dict[str, tuple[Any, Any]] = {}  # one labels() lookup per model and batch
        for ev in events:
            model = ev.get("model_version") or "unknown"
            if schema == "ChatTurn":
                counts[(model, ev.get("intent") or "unknown")] += 1
                fallbacks[model] += bool(ev.get("is_fallback"))
                pair = children.get(model)
                if pair is None:
                    pair = children[model] = (
                        self.confidence.labels(model),
                        self.latency.labels(model),
                    )
                conf = ev.get("confidence")
                if conf is not None:
                    pair[0].observe(conf)
                pair[1].observe(ev["latency_ms"])
            elif schema == "Feedback":
                satisfied = str(is_satisfied(ev)).lower()
                counts[(model, ev.get("category") or "none", satisfied)] += 1
        target = self.turns if schema == "ChatTurn" else self.feedback
        for labels, n in counts.items():
            target.labels(*labels).inc(n)
        for model, n in fallbacks.items():
            if n:
                self.fallbacks.labels(model).inc(n)

    def on_live(self, schema: str, ev: dict[str, Any], open_by_severity: dict[str, int]) -> None:
        if schema == "DriftSignal" and ev.get("detector", "window") == "window":
            labels = (ev["model_version"], ev["signal"])
            self.drift_value.labels(*labels).set(ev["value"])
            self.drift_change.labels(*labels).set(ev["change"])
            self.drift_breached.labels(*labels).set(1 if ev["breached"] else 0)
            self.drift_threshold.labels(*labels).set(ev["threshold"])
        elif schema == "Alert":
            for s in SEVERITIES:
                self.alerts_open.labels(s).set(open_by_severity.get(s, 0))
            if ev["status"] == "OPEN":
                self.alerts_raised.labels(ev["alert_type"], ev["severity"]).inc()
        elif schema == "RetrainTrigger":
            self.retrain_triggers.labels(ev["model_version"], ev["reason"]).inc()
