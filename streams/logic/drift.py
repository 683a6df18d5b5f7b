"""Drift signals: a window of turns compared with a baseline (and with the previous period).

The five chatbot signals with its thresholds as defaults (confidence -10 %, fallback +5 pp, p95
latency +50 %, intent KL > 0.3, tokens +/-30 %), plus the dispatch seed's confidence-variance
change, data quality (null rate, IQR outliers) and performance degradation against the previous
period (drift threshold 10 %).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from streams.logic.attribution import ATTRIBUTABLE, attribute, explain, kl_terms
from streams.logic.turns import TurnStats

CONFIDENCE_DROP = "confidence_drop"
FALLBACK_RATE_INCREASE = "fallback_rate_increase"
LATENCY_INCREASE = "latency_increase"
INTENT_SHIFT = "intent_distribution_shift"
TOKEN_USAGE_CHANGE = "token_usage_change"
CONFIDENCE_VARIANCE_CHANGE = "confidence_variance_change"
NULL_RATE = "data_quality_null_rate"
OUTLIERS = "data_quality_outliers"
PERFORMANCE_DEGRADATION = "performance_degradation"
JUDGED_QUALITY_DROP = "judged_quality_drop"  # the LLM judge's mean score (streams.logic.judge)
SEMANTIC_DRIFT = "semantic_drift"  # what users ask, embedded (streams.logic.semantic)
SIGNALS = (
    CONFIDENCE_DROP,
    FALLBACK_RATE_INCREASE,
    LATENCY_INCREASE,
    INTENT_SHIFT,
    TOKEN_USAGE_CHANGE,
    CONFIDENCE_VARIANCE_CHANGE,
    NULL_RATE,
    OUTLIERS,
    PERFORMANCE_DEGRADATION,
    JUDGED_QUALITY_DROP,
    SEMANTIC_DRIFT,
)
# How each signal's ``change`` is compared with its ``threshold``: "down" breaches at or below a
# negative threshold, "up" at or above it, "both" when |change| reaches it (charts draw +-).
DIRECTIONS = {
    CONFIDENCE_DROP: "down",
    FALLBACK_RATE_INCREASE: "up",
    LATENCY_INCREASE: "up",
    INTENT_SHIFT: "up",
    TOKEN_USAGE_CHANGE: "both",
    CONFIDENCE_VARIANCE_CHANGE: "both",
    NULL_RATE: "up",
    OUTLIERS: "up",
    PERFORMANCE_DEGRADATION: "down",
    JUDGED_QUALITY_DROP: "down",
    SEMANTIC_DRIFT: "up",
}

# The threshold (by its name in DriftThresholds) each signal is compared with.
SIGNAL_THRESHOLD = {
    CONFIDENCE_DROP: "confidence_drop",
    FALLBACK_RATE_INCREASE: "fallback_increase_pp",
    LATENCY_INCREASE: "latency_increase",
    INTENT_SHIFT: "intent_kl",
    TOKEN_USAGE_CHANGE: "token_change",
    CONFIDENCE_VARIANCE_CHANGE: "confidence_variance_change",
    NULL_RATE: "null_rate",
    OUTLIERS: "outlier_share",
    PERFORMANCE_DEGRADATION: "performance_drop",
    JUDGED_QUALITY_DROP: "judge_drop",
    SEMANTIC_DRIFT: "semantic_alpha",
}


@dataclass(frozen=True)
class DriftThresholds:
    confidence_drop: float = 0.10  # relative drop of mean confidence
    fallback_increase_pp: float = 5.0  # percentage points
    latency_increase: float = 0.50  # relative rise of p95 latency
    intent_kl: float = 0.3  # KL(window || baseline)
    token_change: float = 0.30  # relative change of mean tokens, either way
    confidence_variance_change: float = 0.50  # relative change of confidence variance, either way
    null_rate: float = 0.05  # share of turns missing a quality field
    outlier_share: float = 0.05  # share of latencies outside Tukey's fences (on log latency)
    performance_drop: float = 0.10  # relative drop vs the previous period
    min_samples: int = 100  # no verdict on fewer turns
    kl_smoothing: float = 0.5  # additive (Laplace) pseudo-count per intent
    # PSI of a predictive model's feature against its training distribution (0.1 is commonly
    # read as a moderate shift, 0.2 as a significant one; the seed gives no number for it).
    feature_psi: float = 0.2
    # The LLM judge's mean score (0..1) against the judge baseline: relative drop (the seed's
    # confidence-drop 10 %, the closest quality threshold it gives), from this many scores.
    judge_drop: float = 0.10
    judge_min_samples: int = 30
    # Semantic drift of user queries: MMD permutation test at this false-alarm rate per window
    # (the seed gives none; 1 % keeps a 5-minute hop's test to about one false alarm in 8 h),
    # on at least this many sampled queries on each side.
    semantic_alpha: float = 0.01
    semantic_min_samples: int = 50

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class SignalResult:
    signal: str
    value: float
    baseline: float | None
    change: float
    threshold: float
    breached: bool
    details: dict[str, str] = field(default_factory=dict)


def kl_divergence(
    window_counts: Mapping[str, int], baseline: Mapping[str, float], smoothing: float = 0.5
) -> float:
    """KL(P_window || P_baseline) in nats over the union of intents.

    The window's counts get ``smoothing`` pseudo-counts; the baseline's shares are smoothed with
    the same pseudo-count at the window's sample size, so an intent unseen in the baseline gives a
    large but finite divergence instead of infinity.
    """
    return sum(term for _p, _q, term in kl_terms(window_counts, baseline, smoothing).values())


_EPS = 1e-9


def _at_least(x: float, limit: float) -> bool:
    """x >= limit, counting a value that equals the threshold up to rounding as reaching it."""
    return x >= limit - _EPS * max(1.0, abs(limit))


def _rel(cur: float, base: float) -> float:
    return (cur - base) / base if base else (0.0 if cur == base else math.inf)


def performance(stats: Mapping[str, Any]) -> float | None:
    """Effective confidence: mean confidence of answers that were not fallbacks."""
    conf, fb = stats.get("confidence_mean"), stats.get("fallback_rate")
    if conf is None or fb is None:
        return None
    return float(conf) * (1.0 - float(fb))


def evaluate(
    window: TurnStats,
    baseline: Mapping[str, Any],
    thresholds: DriftThresholds = DriftThresholds(),
    previous: Mapping[str, Any] | None = None,
    accuracy: float | None = None,
) -> list[SignalResult]:
    """Every signal that can be computed; empty below ``min_samples`` turns. ``accuracy`` (a
    predictive model's share of successful outcomes in the window, from enough of them) is the
    performance measure when the previous window has one too; otherwise effective confidence."""
    if window.n < thresholds.min_samples:
        return []
    cur = window.summary()
    out: list[SignalResult] = []
    t = thresholds

    def relative(
        signal: str, key: str, limit: float, direction: str, details: dict[str, str] | None = None
    ) -> None:
        """A signal on the relative change of ``key``; ``direction`` is down, up or both."""
        now, base = cur[key], baseline.get(key)
        if now is None or not base:
            return
        ch = _rel(now, base)
        moved = {"down": -ch, "up": ch, "both": abs(ch)}[direction]
        threshold = -limit if direction == "down" else limit
        out.append(
            SignalResult(signal, now, base, ch, threshold, _at_least(moved, limit), details or {})
        )

    relative(CONFIDENCE_DROP, "confidence_mean", t.confidence_drop, "down")
    bf = baseline.get("fallback_rate")
    if bf is not None:
        pp = (cur["fallback_rate"] - bf) * 100
        out.append(
            SignalResult(
                FALLBACK_RATE_INCREASE,
                cur["fallback_rate"],
                bf,
                pp,
                t.fallback_increase_pp,
                _at_least(pp, t.fallback_increase_pp),
            )
        )
    relative(LATENCY_INCREASE, "latency_p95_ms", t.latency_increase, "up", {"quantile": "0.95"})
    bi = baseline.get("intent_distribution") or {}
    if bi and window.intents:
        kl = kl_divergence(window.intents, bi, t.kl_smoothing)
        shares = window.intent_distribution()
        top = sorted(set(shares) | set(bi), key=lambda k: -abs(shares.get(k, 0) - bi.get(k, 0)))[:3]
        details = {k: f"{bi.get(k, 0):.3f}->{shares.get(k, 0):.3f}" for k in top}
        out.append(SignalResult(INTENT_SHIFT, kl, 0.0, kl, t.intent_kl, kl > t.intent_kl, details))
    relative(TOKEN_USAGE_CHANGE, "tokens_mean", t.token_change, "both")
    relative(
        CONFIDENCE_VARIANCE_CHANGE, "confidence_variance", t.confidence_variance_change, "both"
    )
    nr = cur["metrics"]["null_rate"]
    bn = (baseline.get("metrics") or {}).get("null_rate")
    out.append(
        SignalResult(
            NULL_RATE,
            nr,
            bn,
            nr,
            t.null_rate,
            nr > t.null_rate,
            {f: str(c) for f, c in sorted(window.nulls.items())},
        )
    )
    os_ = cur["metrics"]["latency_outlier_share"]
    bo = (baseline.get("metrics") or {}).get("latency_outlier_share")
    out.append(
        SignalResult(
            OUTLIERS, os_, bo, os_, t.outlier_share, os_ > t.outlier_share, {"field": "latency_ms"}
        )
    )
    if previous is not None and (previous.get("sample_size") or 0) >= t.min_samples:
        now_p: float | None
        prev_p: float | None
        if accuracy is not None and previous.get("accuracy") is not None:
            now_p, prev_p, measure = accuracy, float(previous["accuracy"]), "accuracy"
        else:
            now_p, prev_p, measure = performance(cur), performance(previous), "effective confidence"
        if now_p is not None and prev_p:
            ch = _rel(now_p, prev_p)
            out.append(
                SignalResult(
                    PERFORMANCE_DEGRADATION,
                    now_p,
                    prev_p,
                    ch,
                    -t.performance_drop,
                    _at_least(-ch, t.performance_drop),
                    {"against": "previous period", "measure": measure},
                )
            )
    for r in out:
        if r.breached and r.signal in ATTRIBUTABLE:
            why = attribute(r.signal, window.segments, window.intents, baseline, t.kl_smoothing)
            r.details.update(explain(r.signal, why))
    return out
