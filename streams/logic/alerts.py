"""Alerts: the dispatch seed's 8 types and 5 severities, its rules, and one owner per alert.

Whoever sees a problem (stage 2's window evaluation, stage 1's change detectors, the heartbeat
watch, the alert consumer, an operator) does not write alerts: it sends an *alert request* (an
``Alert``-shaped record, status OPEN to raise or RESOLVED to resolve) keyed by the dedup key. The
owner of that key (:func:`apply`, run by the streams worker that owns the key's partition, with
the key's state in a changelog-backed table) turns requests into alert transitions: open,
escalate, remind after the cool-down, resolve, and auto-resolve after a quiet period.

Identity: a request's id is a function of what it reports (key, status, severity, event time);
an alert's id of its key and opening time; a transition's id of the alert, the transition and its
time. A request redelivered after a crash is recognised and re-emits the same transition, so the
alert consumer (which de-duplicates on event ids) posts each transition exactly once.

Severities (the seed's meanings):
- CRITICAL — act now: no inference worker alive, fallback rate >= the critical rate, memory at the
  critical share, alert delivery or Kafka failing for long.
- HIGH — within the hour: fallback rate >= the warning rate, mean confidence under the minimum,
  performance degradation, a drift signal at twice its threshold, some workers silent.
- MEDIUM — within 24 h: a drift signal past its threshold, data-quality problems.
- LOW — informative: an online change point not (yet) confirmed by the windowed signals.
- INFO — notice: a model version's baseline was frozen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from schemas.ids import stable_id
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
    "MEMORY_USAGE": "Memory near the limit: look for a growing table or backlog, raise the limit "
    "or add a replica.",
    "DATABASE_ERROR": "A state store is failing: check the Kafka brokers (state and changelogs "
    "live there) or the service's local store, then its logs.",
}


@dataclass(frozen=True)
class AlertThresholds:
    drift: float = 0.10  # the seed's drift threshold: relative change of mean confidence
    fallback_warning: float = 0.05
    fallback_critical: float = 0.10
    min_confidence: float = 0.75
    service_timeout_s: float = 30.0
    cooldown_s: float = 900.0  # a repeat of an open alert within this is suppressed
    quiet_resolve_s: float = 900.0  # change-point and notice alerts resolve after this quiet
    memory_warning: float = 0.80  # share of the process memory limit
    memory_critical: float = 0.90

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _check(alert_type: str, severity: str) -> None:
    if alert_type not in TYPES:
        raise ValueError(f"unknown alert type {alert_type!r}; expected one of {', '.join(TYPES)}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}")


# -- requests: what a detector sends to the owner ----------------------------------------------

# A request names no alert: the owner knows (or makes) the alert id of its key.
REQUEST_ID = "request"


def raise_request(
    alert_type: str,
    severity: str,
    dedup_key: str,
    title: str,
    at_ms: int,
    *,
    message: str = "",
    model_version: str | None = None,
    signals: Iterable[Mapping[str, Any]] = (),
    recommendation: str | None = None,
    source: str = "streams",
    details: Mapping[str, str] | None = None,
    resolve_after_s: float | None = None,
) -> dict[str, Any]:
    """A request to open (or keep open) the alert of ``dedup_key``. ``resolve_after_s``: the
    owner resolves it by itself once no request for the key came for that long."""
    _check(alert_type, severity)
    det = {str(k): str(v) for k, v in (details or {}).items()}
    if resolve_after_s:
        det["resolve_after_ms"] = str(int(resolve_after_s * 1000))
    return {
        "event_id": stable_id("alert-request", dedup_key, "OPEN", severity, at_ms),
        "event_time": int(at_ms),
        "alert_id": REQUEST_ID,
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
        "details": det,
    }


def resolve_request(
    dedup_key: str, at_ms: int, reason: str = "back within thresholds", source: str = "streams"
) -> dict[str, Any]:
    """A request to resolve the alert of ``dedup_key`` if one is open (an operator's resolve is
    one of these, with ``source`` naming the operator path)."""
    return {
        "event_id": stable_id("alert-request", dedup_key, "RESOLVED", at_ms, source),
        "event_time": int(at_ms),
        "alert_id": REQUEST_ID,
        "alert_type": "DRIFT_DETECTED",  # unused by a resolve request
        "severity": "INFO",
        "status": "RESOLVED",
        "dedup_key": dedup_key,
        "title": f"Resolve {dedup_key}",
        "message": reason,
        "source": source,
        "model_version": None,
        "signals": [],
        "recommendation": None,
        "details": {},
    }


# -- the owner: one key's state, pure ------------------------------------------------------------

RECENT = 32  # request ids remembered per key (a redelivery re-emits what its first pass emitted)


def apply(
    state: Mapping[str, Any] | None,
    request: Mapping[str, Any],
    thresholds: AlertThresholds = AlertThresholds(),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The owner's step for one key: (new state, Alert events to emit). The state is plain JSON
    data (a changelog-backed table carries it)."""
    st: dict[str, Any] = {
        "open": None,
        "recent": [],
        "raised": 0,
        "suppressed": 0,
        "resolved": 0,
        **(state or {}),
    }
    rid = request["event_id"]
    for seen, earlier in st["recent"]:
        if seen == rid:
            return st, [dict(e) for e in earlier]
    key, at = request["dedup_key"], int(request["event_time"])
    if (request.get("details") or {}).get("replayed") and at <= st.get("last_at", -1):
        return st, []  # re-sent after a restart, older than what the key has seen: stale
    st["last_at"] = max(at, st.get("last_at", at))
    cur = dict(st["open"]) if st["open"] else None
    events: list[dict[str, Any]] = []
    if request["status"] == "RESOLVED":
        if cur is not None:
            events.append(_resolved(cur, key, at, request["message"], request["source"]))
            st["open"] = None
            st["resolved"] += 1
    else:
        _check(request["alert_type"], request["severity"])
        details = dict(request.get("details") or {})
        details.pop("replayed", None)
        resolve_after = int(details.get("resolve_after_ms", 0) or 0)
        if cur is None:
            alert_id = stable_id("alert", key, at)
            cur = {
                "alert_id": alert_id,
                "opened_ms": at,
                "last_sent_ms": at,
                "last_seen_ms": at,
                "occurrences": 1,
            }
            transition = "opened"
        else:
            cur["occurrences"] += 1
            cur["last_seen_ms"] = max(cur["last_seen_ms"], at)
            escalated = _RANK[request["severity"]] < _RANK[cur["severity"]]
            cooling = at - cur["last_sent_ms"] < thresholds.cooldown_s * 1000
            if cooling and not escalated:
                st["suppressed"] += 1
                transition = ""
            else:
                transition = "escalated" if escalated else "reminder"
                cur["last_sent_ms"] = at
        if transition:
            cur.update(
                alert_type=request["alert_type"],
                severity=request["severity"],
                title=request["title"],
                model_version=request.get("model_version"),
            )
            st["raised"] += 1
            events.append(
                {
                    **request,
                    "event_id": stable_id(
                        "alert-event", cur["alert_id"], transition, request["severity"], at
                    ),
                    "alert_id": cur["alert_id"],
                    "details": {
                        **details,
                        "transition": transition,
                        "opened_at": str(cur["opened_ms"]),
                        "occurrences": str(cur["occurrences"]),
                    },
                }
            )
        cur["resolve_after_ms"] = resolve_after
        st["open"] = cur
    st["recent"] = [*st["recent"], [rid, events]][-RECENT:]
    return st, events


def _resolved(
    cur: Mapping[str, Any], key: str, at: int, reason: str, source: str
) -> dict[str, Any]:
    return {
        "event_id": stable_id("alert-event", cur["alert_id"], "resolved"),
        "event_time": at,
        "alert_id": cur["alert_id"],
        "alert_type": cur["alert_type"],
        "severity": cur["severity"],
        "status": "RESOLVED",
        "dedup_key": key,
        "title": f"Resolved: {cur['title']}",
        "message": reason,
        "source": source,
        "model_version": cur.get("model_version"),
        "signals": [],
        "recommendation": None,
        "details": {
            "transition": "resolved",
            "opened_at": str(cur["opened_ms"]),
            "open_for_ms": str(max(0, at - cur["opened_ms"])),
            "resolved_by": source,
        },
    }


def quiet_resolve(state: Mapping[str, Any] | None, key: str, now_ms: int) -> dict[str, Any] | None:
    """The resolve request for an open alert that asked to resolve after a quiet period and got
    no request for that long; its time is when the quiet period ended (deterministic)."""
    cur = (state or {}).get("open")
    if not cur or not cur.get("resolve_after_ms"):
        return None
    due = cur["last_seen_ms"] + cur["resolve_after_ms"]
    if now_ms < due:
        return None
    return resolve_request(key, due, f"quiet for {cur['resolve_after_ms'] / 1000:.0f}s")


class AlertBook:
    """Every key's owner state in one dict: the owner's logic outside a stream (tests, replay,
    and the in-process view of a single worker). The streams worker keeps the same states in a
    changelog-backed table instead."""

    def __init__(self, thresholds: AlertThresholds = AlertThresholds()) -> None:
        self.thresholds = thresholds
        self.states: dict[str, dict[str, Any]] = {}

    def apply(self, requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for req in requests:
            key = req["dedup_key"]
            self.states[key], events = apply(self.states.get(key), req, self.thresholds)
            out.extend(events)
        return out

    def open(self) -> dict[str, dict[str, Any]]:
        return {k: s["open"] for k, s in self.states.items() if s.get("open")}

    def stats(self) -> dict[str, int]:
        return {
            "open": len(self.open()),
            **{
                n: sum(s[n] for s in self.states.values())
                for n in ("raised", "suppressed", "resolved")
            },
        }


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
                recommendation=RECOMMENDATIONS.get(r.signal),
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
