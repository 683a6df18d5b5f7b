"""The detectors' side of alerts: which alert requests a window's drift signals, the seed's rules,
a change point, the inference workers' heartbeats, memory and the state stores send to the alert
owner (:mod:`streams.logic.alerts`), with the seed's severities and recommendations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.logic.alerts import (
    RECOMMENDATIONS,
    AlertThresholds,
    raise_request,
    resolve_request,
)
from streams.logic.drift import (
    CONFIDENCE_DROP,
    FALLBACK_RATE_INCREASE,
    JUDGED_QUALITY_DROP,
    NULL_RATE,
    OUTLIERS,
    PERFORMANCE_DEGRADATION,
    SignalResult,
)

# -- detectors: what raises and resolves what ------------------------------------------------


def worker_requests(
    heartbeats: Mapping[str, int],
    now_ms: int,
    thresholds: AlertThresholds = AlertThresholds(),
    forget_after_s: float = 3600.0,
) -> list[dict[str, Any]]:
    """SERVICE_DOWN when inference workers stop sending heartbeats (the seed's service timeout):
    CRITICAL when none is alive, HIGH when some are silent; a resolve request once all are back.
    A worker silent for longer than ``forget_after_s`` is considered retired."""
    key = "service_down:inference"
    timeout_ms = thresholds.service_timeout_s * 1000
    known = {w: t for w, t in heartbeats.items() if now_ms - t <= forget_after_s * 1000}
    silent = sorted(w for w, t in known.items() if now_ms - t > timeout_ms)
    if not silent:
        return [resolve_request(key, now_ms, "every inference worker is sending heartbeats")]
    alive = len(known) - len(silent)
    ages = {w: (now_ms - known[w]) / 1000 for w in silent}
    return [
        raise_request(
            "SERVICE_DOWN",
            "CRITICAL" if alive == 0 else "HIGH",
            key,
            "No inference worker is answering"
            if alive == 0
            else f"{len(silent)} inference worker(s) silent",
            now_ms,
            message=", ".join(f"{w} silent {a:.0f}s" for w, a in ages.items())
            + f" (timeout {thresholds.service_timeout_s:.0f}s); {alive} alive",
            signals=[
                {
                    "name": f"heartbeat_age_s:{w}",
                    "current": a,
                    "baseline": None,
                    "threshold": thresholds.service_timeout_s,
                }
                for w, a in ages.items()
            ],
            recommendation=RECOMMENDATIONS["SERVICE_DOWN"],
            details={"service_timeout_s": f"{thresholds.service_timeout_s:g}"},
        )
    ]


def classify(r: SignalResult, t: AlertThresholds = AlertThresholds()) -> tuple[str, str]:
    """Alert type and severity of a breached windowed signal."""
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
    if r.signal == JUDGED_QUALITY_DROP:  # the seed's closest type: answers got worse
        big = abs(r.change) >= 2 * abs(r.threshold)
        return "PERFORMANCE_DEGRADATION", "HIGH" if big else "MEDIUM"
    severe = r.threshold and abs(r.change) >= 2 * abs(r.threshold)
    return "DRIFT_DETECTED", "HIGH" if severe else "MEDIUM"


def drift_requests(
    model_version: str,
    results: Iterable[SignalResult],
    at_ms: int,
    thresholds: AlertThresholds = AlertThresholds(),
    variant: str | None = None,
) -> list[dict[str, Any]]:
    """A raise request per breached windowed signal, a resolve request per signal within its
    threshold (the owner ignores those for keys with no open alert)."""
    out: list[dict[str, Any]] = []
    scope = model_version if variant is None else f"{model_version}/{variant}"
    for r in results:
        key = f"drift:{scope}:{r.signal}"
        if not r.breached:
            out.append(resolve_request(key, at_ms))
            continue
        alert_type, severity = classify(r, thresholds)
        out.append(
            raise_request(
                alert_type,
                severity,
                key,
                _title(r, scope),
                at_ms,
                model_version=model_version,
                message=f"{r.signal}: {r.value:.4g} vs baseline {_fmt(r.baseline)} (change "
                f"{r.change:+.3g}, threshold {r.threshold:+.3g})",
                signals=[
                    {
                        "name": r.signal,
                        "current": r.value,
                        "baseline": r.baseline,
                        "threshold": r.threshold,
                    }
                ],
                recommendation=RECOMMENDATIONS.get(r.signal.split(":")[0]),
                details={**r.details, "threshold": f"{r.threshold:g}"},
            )
        )
    return out


def rule_requests(
    model_version: str,
    summary: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    at_ms: int,
    thresholds: AlertThresholds = AlertThresholds(),
    *,
    predictive: bool = False,
    min_samples: int = 100,
    breached: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """The dispatch seed's absolute rules on a window, with or without a baseline:
    fallback rate (warning / critical; for predictive models, where a fallback is the rules
    answering instead of the model — a chatbot's "fallback intent" has its normal share and is
    judged against its baseline), minimum mean confidence, and the drift threshold on the
    relative change of mean confidence (unless the windowed confidence-drop signal already
    reported it). Below ``min_samples`` events no verdict (no request)."""
    t = thresholds
    n = summary.get("sample_size") or 0
    if n < min_samples:
        return []
    out: list[dict[str, Any]] = []
    scope = model_version
    window = f"{summary.get('window_start')}..{summary.get('window_end')}"
    fb = summary.get("fallback_rate")
    if predictive and fb is not None:
        key = f"rule:{scope}:fallback_rate"
        if fb >= t.fallback_warning:
            critical = fb >= t.fallback_critical
            limit = t.fallback_critical if critical else t.fallback_warning
            out.append(
                raise_request(
                    "HIGH_FALLBACK_RATE",
                    "CRITICAL" if critical else "HIGH",
                    key,
                    f"Fallback rate {fb:.1%} on {scope} (limit {limit:.0%})",
                    at_ms,
                    model_version=model_version,
                    message=f"{fb:.2%} of {n} predictions fell back to the rules in {window}; "
                    f"warning at {t.fallback_warning:.0%}, critical at {t.fallback_critical:.0%}",
                    signals=[
                        {
                            "name": "fallback_rate",
                            "current": fb,
                            "baseline": None,
                            "threshold": limit,
                        }
                    ],
                    recommendation=RECOMMENDATIONS["HIGH_FALLBACK_RATE"],
                    details={
                        "fallback_warning": f"{t.fallback_warning:g}",
                        "fallback_critical": f"{t.fallback_critical:g}",
                        "sample_size": str(n),
                    },
                )
            )
        else:
            out.append(resolve_request(key, at_ms, f"fallback rate {fb:.1%} under the limits"))
    conf = summary.get("confidence_mean")
    if conf is not None:
        key = f"rule:{scope}:min_confidence"
        if conf < t.min_confidence:
            out.append(
                raise_request(
                    "LOW_CONFIDENCE",
                    "HIGH",
                    key,
                    f"Mean confidence {conf:.2f} under {t.min_confidence:.2f} on {scope}",
                    at_ms,
                    model_version=model_version,
                    message=f"mean confidence {conf:.3f} over {n} events in {window}",
                    signals=[
                        {
                            "name": "confidence_mean",
                            "current": conf,
                            "baseline": None,
                            "threshold": t.min_confidence,
                        }
                    ],
                    recommendation=RECOMMENDATIONS["LOW_CONFIDENCE"],
                    details={"min_confidence": f"{t.min_confidence:g}", "sample_size": str(n)},
                )
            )
        else:
            out.append(resolve_request(key, at_ms, f"mean confidence {conf:.2f}"))
    base = (baseline or {}).get("confidence_mean")
    if conf is not None and base:
        key = f"rule:{scope}:confidence_drift"
        change = (conf - base) / base
        if abs(change) >= t.drift - 1e-12 and CONFIDENCE_DROP not in set(breached):
            out.append(
                raise_request(
                    "DRIFT_DETECTED",
                    "HIGH" if abs(change) >= 2 * t.drift else "MEDIUM",
                    key,
                    f"Mean confidence {change:+.0%} against the baseline on {scope}",
                    at_ms,
                    model_version=model_version,
                    message=f"mean confidence {conf:.3f} vs baseline {base:.3f} "
                    f"(drift threshold {t.drift:.0%})",
                    signals=[
                        {
                            "name": "confidence_mean",
                            "current": conf,
                            "baseline": base,
                            "threshold": t.drift,
                        }
                    ],
                    recommendation=RECOMMENDATIONS["confidence_variance_change"]
                    if change > 0
                    else RECOMMENDATIONS["confidence_drop"],
                    details={"drift": f"{t.drift:g}", "sample_size": str(n)},
                )
            )
        else:
            out.append(resolve_request(key, at_ms))
    return out


def change_request(
    model_version: str,
    metric: str,
    direction: str,
    detector: str,
    before: float,
    recent: float,
    at_ms: int,
    thresholds: AlertThresholds = AlertThresholds(),
) -> dict[str, Any]:
    """An online change point (river detectors): LOW until the windowed signals confirm it;
    resolved by the owner after a quiet period without another change of the same kind."""
    return raise_request(
        "DRIFT_DETECTED",
        "LOW",
        f"change:{model_version}:{metric}:{direction}",
        f"Abrupt {metric} change ({direction}) on {model_version}",
        at_ms,
        model_version=model_version,
        message=f"{detector}: {metric} moved from {before:.4g} to {recent:.4g}",
        signals=[
            {
                "name": f"change_point:{metric}",
                "current": recent,
                "baseline": before,
                "threshold": None,
            }
        ],
        recommendation=RECOMMENDATIONS["change_point"],
        details={"detector": detector},
        resolve_after_s=thresholds.quiet_resolve_s,
    )


def memory_requests(
    component: str,
    used_bytes: int,
    limit_bytes: int,
    at_ms: int,
    thresholds: AlertThresholds = AlertThresholds(),
) -> list[dict[str, Any]]:
    """MEMORY_USAGE: a process's resident memory against its limit (cgroup or setting)."""
    key = f"memory:{component}"
    if limit_bytes <= 0:
        return []
    share = used_bytes / limit_bytes
    if share < thresholds.memory_warning:
        return [resolve_request(key, at_ms, f"memory at {share:.0%} of the limit")]
    critical = share >= thresholds.memory_critical
    return [
        raise_request(
            "MEMORY_USAGE",
            "CRITICAL" if critical else "HIGH",
            key,
            f"{component} uses {share:.0%} of its memory limit",
            at_ms,
            message=f"{used_bytes / 2**20:.0f} MiB of {limit_bytes / 2**20:.0f} MiB "
            f"(warning {thresholds.memory_warning:.0%}, critical {thresholds.memory_critical:.0%})",
            signals=[
                {
                    "name": "memory_share",
                    "current": share,
                    "baseline": None,
                    "threshold": thresholds.memory_critical
                    if critical
                    else thresholds.memory_warning,
                }
            ],
            recommendation=RECOMMENDATIONS["MEMORY_USAGE"],
            details={
                "memory_warning": f"{thresholds.memory_warning:g}",
                "memory_critical": f"{thresholds.memory_critical:g}",
            },
        )
    ]


def store_requests(component: str, error: str | None, at_ms: int) -> list[dict[str, Any]]:
    """DATABASE_ERROR: a state store (Kafka, for the tables and changelogs; the delivery store of
    the alert consumer) failing; resolved when it answers again."""
    key = f"database:{component}"
    if error is None:
        return [resolve_request(key, at_ms, f"{component} answers again")]
    return [
        raise_request(
            "DATABASE_ERROR",
            "HIGH",
            key,
            f"{component} is failing",
            at_ms,
            message=error,
            recommendation=RECOMMENDATIONS["DATABASE_ERROR"],
        )
    ]


def notice_request(
    key: str,
    title: str,
    at_ms: int,
    *,
    message: str = "",
    model_version: str | None = None,
    thresholds: AlertThresholds = AlertThresholds(),
    alert_type: str = "DRIFT_DETECTED",
) -> dict[str, Any]:
    """An INFO notice (a baseline frozen, ...): opened and resolved after the quiet period."""
    return raise_request(
        alert_type,
        "INFO",
        key,
        title,
        at_ms,
        message=message,
        model_version=model_version,
        resolve_after_s=thresholds.quiet_resolve_s,
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _title(r: SignalResult, scope: str) -> str:
    if r.signal in ("fallback_rate_increase",):
        return f"Fallback rate {r.value:.1%} (+{r.change:.1f} pp) on {scope}"
    if r.signal == "intent_distribution_shift":
        return f"Intent mix shifted (KL {r.value:.2f}) on {scope}"
    if r.signal.startswith("feature_drift:"):
        feature = r.signal.split(":", 1)[1]
        return f"Feature {feature} drifted from training (PSI {r.value:.2f}) on {scope}"
    if r.signal == "confidence_vs_training":
        return f"Confidence {r.change:+.0%} against training on {scope}"
    if r.baseline:
        return f"{r.signal.replace('_', ' ').capitalize()}: {r.change:+.0%} on {scope}"
    return f"{r.signal.replace('_', ' ').capitalize()}: {r.value:.3g} on {scope}"
