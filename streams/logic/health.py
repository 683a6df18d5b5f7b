"""HEALTHY / DEGRADED / UNHEALTHY, with the reasons, from what the streams can see: fallback rate,
low-confidence rate, inference-worker heartbeats and consumer lag."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

HEALTHY, DEGRADED, UNHEALTHY = "HEALTHY", "DEGRADED", "UNHEALTHY"
_ORDER = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


@dataclass(frozen=True)
class HealthThresholds:
    fallback_warning: float = 0.05
    fallback_critical: float = 0.10
    min_confidence: float = 0.75
    low_confidence_warning: float = 0.30  # share of turns below min_confidence
    low_confidence_critical: float = 0.50
    service_timeout_s: float = 30.0
    lag_warning: int = 10_000
    lag_critical: int = 100_000
    forget_worker_s: float = 3600.0  # a worker silent this long counts as retired, not down

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _level(value: float, warning: float, critical: float) -> str:
    return UNHEALTHY if value >= critical else DEGRADED if value >= warning else HEALTHY


def check_health(
    *,
    now_ms: int,
    fallback_rate: float | None,
    low_confidence_rate: float | None,
    heartbeats: Mapping[str, int],
    consumer_lag: int | None,
    expect_workers: bool = False,
    thresholds: HealthThresholds = HealthThresholds(),
) -> dict[str, Any]:
    """``heartbeats`` maps worker id to its last heartbeat (epoch ms). ``expect_workers`` makes
    "no worker ever seen" unhealthy (set it when inference runs through Kafka)."""
    t = thresholds
    checks: dict[str, dict[str, Any]] = {}

    def put(name: str, status: str, reason: str, value: Any) -> None:
        checks[name] = {"status": status, "reason": reason, "value": value}

    if fallback_rate is None:
        put("fallback", HEALTHY, "no traffic yet", None)
    else:
        lvl = _level(fallback_rate, t.fallback_warning, t.fallback_critical)
        limit = {UNHEALTHY: t.fallback_critical, DEGRADED: t.fallback_warning}.get(lvl)
        reason = f"fallback rate {fallback_rate:.1%}" + (
            f" >= {limit:.0%}" if limit is not None else ""
        )
        put("fallback", lvl, reason, fallback_rate)

    if low_confidence_rate is None:
        put("confidence", HEALTHY, "no traffic yet", None)
    else:
        lvl = _level(low_confidence_rate, t.low_confidence_warning, t.low_confidence_critical)
        put(
            "confidence",
            lvl,
            f"{low_confidence_rate:.1%} of turns below confidence {t.min_confidence}",
            low_confidence_rate,
        )

    heartbeats = {w: ms for w, ms in heartbeats.items() if now_ms - ms <= t.forget_worker_s * 1000}
    stale = sorted(w for w, ms in heartbeats.items() if now_ms - ms > t.service_timeout_s * 1000)
    alive = len(heartbeats) - len(stale)
    if not heartbeats:
        put(
            "inference_workers",
            UNHEALTHY if expect_workers else HEALTHY,
            "no inference worker heartbeat seen"
            if expect_workers
            else "no inference workers in use",
            0,
        )
    elif alive == 0:
        put(
            "inference_workers",
            UNHEALTHY,
            f"all workers silent > {t.service_timeout_s:.0f}s: {', '.join(stale)}",
            0,
        )
    elif stale:
        put(
            "inference_workers",
            DEGRADED,
            f"{len(stale)} worker(s) silent: {', '.join(stale)}",
            alive,
        )
    else:
        put("inference_workers", HEALTHY, f"{alive} worker(s) alive", alive)

    if consumer_lag is None:
        put("consumer_lag", HEALTHY, "lag unknown", None)
    else:
        lvl = _level(consumer_lag, t.lag_warning, t.lag_critical)
        put("consumer_lag", lvl, f"{consumer_lag} records behind", consumer_lag)

    status = max((c["status"] for c in checks.values()), key=_ORDER.__getitem__)
    reasons = [f"{n}: {c['reason']}" for n, c in checks.items() if c["status"] != HEALTHY]
    return {"status": status, "reasons": reasons, "checks": checks, "checked_at": now_ms}
