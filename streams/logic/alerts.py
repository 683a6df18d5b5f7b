"""Alerts: the dispatch seed's 8 types and 5 severities, its rules, and one owner per alert.

Whoever sees a problem (stage 2's window evaluation, stage 1's change detectors, the heartbeat
watch, the alert consumer, an operator) does not write alerts: it sends an *alert request* (an
``Alert``-shaped record, status OPEN to raise or RESOLVED to resolve) keyed by the dedup key. The
owner of that key (:func:`apply`, run by the streams worker that owns the key's partition, with
the key's state in a changelog-backed table) turns requests into alert transitions: open,
escalate, remind after the cool-down, resolve, and auto-resolve after a quiet period. Which
requests each detector sends is in :mod:`streams.logic.alert_rules`.

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
    "judged_quality_drop": "The LLM judge scores recent answers lower: read the worst examples "
    "attached, check the intents named, and compare with users' ratings (judge /calibration).",
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
    "feature_drift": "A model input no longer looks like its training data (PSI over the "
    "training bins): check the producer of that feature, then retrain on recent data if the "
    "change is real.",
    "confidence_vs_training": "Live confidence is under what the model showed on its training "
    "data: the traffic moved away from it; compare the features' drift and consider retraining.",
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
DETAIL_KEYS = ("message", "recommendation", "signals", "details")


def brief(event: Mapping[str, Any], *, detailed: bool = False) -> dict[str, Any]:
    """The fields of an Alert event that history and views keep."""
    keys = BRIEF_KEYS + DETAIL_KEYS if detailed else BRIEF_KEYS
    return {k: event.get(k) for k in keys}
