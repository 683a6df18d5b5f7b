"""Prometheus metrics of the streams worker, served at /metrics by the Faust web server."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO")


class StreamsMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
        self.replays_skipped = Counter(
            "continuum_replayed_events_skipped_total",
            "Events skipped because their partial already held them (replay after a crash)",
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
        self.health = Gauge(
            "continuum_health_status", "0 healthy, 1 degraded, 2 unhealthy", registry=r
        )
        for s in SEVERITIES:
            self.alerts_open.labels(s).set(0)

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
