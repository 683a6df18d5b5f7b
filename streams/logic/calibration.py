"""Thresholds calibrated from history: replay a stretch of a model's turns through the same
window evaluation as the live worker (:func:`streams.logic.drift.evaluate`), and for each signal
propose the smallest threshold that would have breached at most the target number of times
(e.g. one false alarm per model per week) on that history, taken as healthy. Then inject known
shifts into the second half of the same history and report how long each proposed threshold
takes to detect them."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from streams.logic.drift import (
    DIRECTIONS,
    JUDGED_QUALITY_DROP,
    SEMANTIC_DRIFT,
    SIGNAL_THRESHOLD,
    DriftThresholds,
    evaluate,
)
from streams.logic.turns import TurnStats

WEEK_MS = 7 * 86_400_000


def windows(
    turns: Iterable[Mapping[str, Any]], window_ms: int, hop_ms: int
) -> list[tuple[int, TurnStats]]:
    """(end, statistics) of every hop's window over the turns, oldest first."""
    buckets: dict[int, TurnStats] = {}
    for t in turns:
        b = int(t["event_time"]) // hop_ms * hop_ms
        buckets.setdefault(b, TurnStats()).update(t)
    if not buckets:
        return []
    first, last = min(buckets), max(buckets)
    out = []
    for end in range(first + window_ms, last + hop_ms + 1, hop_ms):
        acc = TurnStats()
        for b in range(end - window_ms, end, hop_ms):
            if b in buckets:
                acc.merge(buckets[b])
        out.append((end, acc))
    return out


def baseline_of(turns: Iterable[Mapping[str, Any]], n: int) -> dict[str, Any] | None:
    """The statistics of the first ``n`` turns (how the live worker freezes a baseline)."""
    acc = TurnStats()
    for t in turns:
        acc.update(t)
        if acc.n >= n:
            return acc.summary()
    return None


def moved(
    wins: list[tuple[int, TurnStats]],
    baseline: Mapping[str, Any],
    drift: DriftThresholds,
    window_ms: int,
) -> dict[str, list[tuple[int, float]]]:
    """Per signal, (window end, how far the window moved in the signal's direction): the number
    the threshold is compared with."""
    out: dict[str, list[tuple[int, float]]] = {}
    periods: dict[int, dict[str, Any]] = {}
    for end, stats in wins:
        summary = stats.summary()
        prev = periods.get(end - window_ms)
        for r in evaluate(stats, baseline, drift, previous=prev):
            ch = r.change
            value = {"down": -ch, "up": ch, "both": abs(ch)}[DIRECTIONS[r.signal]]
            out.setdefault(r.signal, []).append((end, value))
        if stats.n >= drift.min_samples:
            periods[end] = summary
    return out


def _just_above(x: float) -> float:
    """The smallest round number (3 significant digits) strictly above ``x``."""
    if x <= 0:
        return 1e-3
    digits = 3 - int(math.floor(math.log10(x))) - 1
    step = 10.0**-digits
    return round(math.floor(x / step) * step + step, max(digits, 0))


@dataclass(frozen=True)
class Proposal:
    signal: str
    threshold: str  # its name in the thresholds
    seed: float
    proposed: float | None  # None: no window of this signal in the history
    windows: int
    exceedances: int  # windows of the history the proposed value would have breached
    allowed: int

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def propose(
    values: Mapping[str, list[tuple[int, float]]],
    span_ms: int,
    target_per_week: float,
    seed: DriftThresholds | None = None,
) -> list[Proposal]:
    """The smallest round threshold each signal would have exceeded at most
    ``target_per_week`` x (weeks of history) times."""
    seed = seed or DriftThresholds()
    out = []
    allowed = int(math.floor(target_per_week * span_ms / WEEK_MS))
    for signal, name in SIGNAL_THRESHOLD.items():
        if signal in (JUDGED_QUALITY_DROP, SEMANTIC_DRIFT):
            continue  # judge scores are not in the turns' history; semantic drift's threshold
            # is a false-alarm rate already (a permutation test)
        seen = sorted((v for _, v in values.get(signal, [])), reverse=True)
        default = float(getattr(seed, name))
        if not seen:
            out.append(Proposal(signal, name, default, None, 0, 0, allowed))
            continue
        limit = seen[allowed] if allowed < len(seen) else 0.0
        if limit <= 0:
            # The history never moved this way (no null field, say): no evidence to tune on.
            out.append(Proposal(signal, name, default, default, len(seen), 0, allowed))
            continue
        proposed = _just_above(limit)
        exceed = sum(v >= proposed for v in seen)
        out.append(Proposal(signal, name, default, proposed, len(seen), exceed, allowed))
    return out


SHIFTS = ("latency", "confidence", "fallback", "tokens", "intent")
SHIFT_SIGNAL = {
    "latency": "latency_increase",
    "confidence": "confidence_drop",
    "fallback": "fallback_rate_increase",
    "tokens": "token_usage_change",
    "intent": "intent_distribution_shift",
}


def inject(
    turns: list[dict[str, Any]], at_ms: int, shift: str, seed: int = 0
) -> list[dict[str, Any]]:
    """A copy of the turns with a known shift from ``at_ms`` on: p95 latency x1.5, confidence
    -15 %, fallback +10 pp, tokens x1.5, or 40 % of the turns moved to a new intent."""
    rng = random.Random(seed)
    out = []
    for t in turns:
        if t["event_time"] < at_ms:
            out.append(t)
            continue
        t = dict(t)
        if shift == "latency":
            t["latency_ms"] = t["latency_ms"] * 1.5
        elif shift == "confidence" and t.get("confidence") is not None:
            t["confidence"] = t["confidence"] * 0.85
        elif shift == "fallback" and not t.get("is_fallback"):
            t["is_fallback"] = rng.random() < 0.10
        elif shift == "tokens":
            for f in ("prompt_tokens", "completion_tokens"):
                if t.get(f) is not None:
                    t[f] = int(t[f] * 1.5)
        elif shift == "intent" and rng.random() < 0.4:
            t["intent"] = "calibration_new_topic"
        out.append(t)
    return out


def detection_delays(
    turns: list[dict[str, Any]],
    baseline: Mapping[str, Any],
    thresholds: DriftThresholds,
    window_ms: int,
    hop_ms: int,
    shifts: Iterable[str] = SHIFTS,
) -> dict[str, int | None]:
    """Per shift injected at the middle of the history: ms from the injection to the end of the
    first window whose signal breaches (None: not detected before the history ends)."""
    if not turns:
        return {}
    at = (turns[0]["event_time"] + turns[-1]["event_time"]) // 2 // hop_ms * hop_ms
    out: dict[str, int | None] = {}
    for shift in shifts:
        signal = SHIFT_SIGNAL[shift]
        vals = moved(
            windows(inject(turns, at, shift), window_ms, hop_ms), baseline, thresholds, window_ms
        )
        limit = float(getattr(thresholds, SIGNAL_THRESHOLD[signal]))
        hit = [end for end, v in vals.get(signal, []) if end > at and v >= limit - 1e-9]
        out[shift] = (min(hit) - at) if hit else None
    return out


def apply_proposals(seed: DriftThresholds, proposals: Iterable[Proposal]) -> DriftThresholds:
    changes: dict[str, Any] = {p.threshold: p.proposed for p in proposals if p.proposed is not None}
    return replace(seed, **changes)
