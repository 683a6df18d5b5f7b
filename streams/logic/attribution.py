""" "What changed": where a drift signal's change comes from, segment by segment.

A window's turns are split by intent, channel (the turn's ``metadata["channel"]``) and experiment
arm; each segment keeps mergeable counts (turns, fallbacks, confidence and token sums, a coarse
latency sketch). A signal's total change is then decomposed into per-segment contributions that
add up to it exactly, so a person reads "vehicle_search: +4.1 pp of the +5.3 pp" rather than a
bare number:

- intent KL: the divergence's own terms, ``p_i log(p_i / q_i)`` (they sum to the KL);
- a rate or a mean (fallback rate, confidence, tokens): ``w_i m_i - b_i g_i`` with ``w``/``b``
  the segment's share of the window/baseline and ``m``/``g`` its value there; the sum over a
  dimension is the change of the total. A baseline frozen before segments existed has no ``g``:
  its overall value stands in for every segment's (the sum still holds);
- p95 latency: not additive, so the share of turns slower than the baseline's p95 is (5 % in the
  baseline by definition); a segment's contribution is its part of the rise of that share, and
  its own p95 before and after is shown beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from streams.logic.sketch import QuantileSketch

DIMENSIONS = ("intent", "channel", "variant")
NONE = "(none)"
OTHER = "(other)"
MAX_SEGMENTS = 40  # distinct values kept per dimension; the rest are pooled into "(other)"
SKETCH_ACCURACY = 0.05  # a segment's p95 within 5 %: enough to rank, 10x smaller than 1 %
TAIL_Q = 0.95


def segment_values(turn: Mapping[str, Any]) -> dict[str, str]:
    """The segment a turn falls in, per dimension."""
    meta = turn.get("metadata") or {}
    return {
        "intent": str(turn.get("intent") or NONE),
        "channel": str(meta.get("channel") or NONE),
        "variant": str(turn.get("variant") or NONE),
    }


_BUCKETS = QuantileSketch(SKETCH_ACCURACY)  # the segments' bucketing, one logarithm per turn


class SegmentStats:
    __slots__ = ("n", "fallbacks", "conf_n", "conf_sum", "tok_n", "tok_sum", "latency")

    def __init__(self) -> None:
        self.n = 0
        self.fallbacks = 0
        self.conf_n = 0
        self.conf_sum = 0.0
        self.tok_n = 0
        self.tok_sum = 0.0
        self.latency = QuantileSketch(SKETCH_ACCURACY)

    def add(self, fallback: bool, conf: Any, tokens: Any, bucket: int | None, timed: bool) -> None:
        """One turn, its fields read once by :meth:`Segments.update` for all its segments."""
        self.n += 1
        self.fallbacks += fallback
        if conf is not None:
            self.conf_n += 1
            self.conf_sum += float(conf)
        if tokens is not None:
            self.tok_n += 1
            self.tok_sum += tokens
        if timed:
            self.latency.add_bucket(bucket)

    def merge(self, other: SegmentStats) -> None:
        self.n += other.n
        self.fallbacks += other.fallbacks
        self.conf_n += other.conf_n
        self.conf_sum += other.conf_sum
        self.tok_n += other.tok_n
        self.tok_sum += other.tok_sum
        self.latency.merge(other.latency)

    def to_list(self) -> list[Any]:
        return [
            self.n,
            self.fallbacks,
            self.conf_n,
            self.conf_sum,
            self.tok_n,
            self.tok_sum,
            self.latency.to_dict(),
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> SegmentStats:
        s = cls()
        s.n, s.fallbacks, s.conf_n = int(v[0]), int(v[1]), int(v[2])
        s.conf_sum, s.tok_n, s.tok_sum = float(v[3]), int(v[4]), float(v[5])
        s.latency = QuantileSketch.from_dict(v[6])
        return s


class Segments:
    """Per-segment statistics of a set of turns, keyed ``"<dimension>=<value>"``."""

    def __init__(self) -> None:
        self.stats: dict[str, SegmentStats] = {}
        self._per_dim: dict[str, int] = {}

    def _slot(self, dim: str, value: str) -> SegmentStats:
        key = f"{dim}={value}"
        s = self.stats.get(key)
        if s is None:
            if self._per_dim.get(dim, 0) >= MAX_SEGMENTS:
                return self._slot(dim, OTHER) if value != OTHER else self._new(key, dim)
            s = self._new(key, dim)
        return s

    def _new(self, key: str, dim: str) -> SegmentStats:
        s = self.stats[key] = SegmentStats()
        self._per_dim[dim] = self._per_dim.get(dim, 0) + 1
        return s

    def update(self, turn: Mapping[str, Any]) -> None:
        pt, ct = turn.get("prompt_tokens"), turn.get("completion_tokens")
        latency = turn.get("latency_ms")
        args = (
            bool(turn.get("is_fallback")),
            turn.get("confidence"),
            pt + ct if pt is not None and ct is not None else None,
            _BUCKETS.bucket_of(latency) if latency is not None else None,
            latency is not None,
        )
        for dim, value in segment_values(turn).items():
            self._slot(dim, value).add(*args)

    def merge(self, other: Segments) -> None:
        for key, s in other.stats.items():
            dim, _, value = key.partition("=")
            self._slot(dim, value).merge(s)

    def to_dict(self) -> dict[str, Any]:
        return {k: s.to_list() for k, s in self.stats.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Segments:
        out = cls()
        for key, v in (d or {}).items():
            dim = key.partition("=")[0]
            out.stats[key] = SegmentStats.from_list(v)
            out._per_dim[dim] = out._per_dim.get(dim, 0) + 1
        return out

    def summary(self, latency_p95: float | None) -> dict[str, dict[str, float]]:
        """Per segment: its share of the turns (within its dimension), fallback rate, mean
        confidence and tokens, p95 latency, and the share of its turns slower than
        ``latency_p95`` (the whole set's). What a Baseline keeps to attribute later changes."""
        totals = self._totals()
        out: dict[str, dict[str, float]] = {}
        for key, s in sorted(self.stats.items()):
            total = totals[key.partition("=")[0]]
            row = {"n": float(s.n), "share": s.n / total if total else 0.0}
            if s.n:
                row["fallback_rate"] = s.fallbacks / s.n
            if s.conf_n:
                row["confidence_mean"] = s.conf_sum / s.conf_n
                row["confidence_n"] = float(s.conf_n)
            if s.tok_n:
                row["tokens_mean"] = s.tok_sum / s.tok_n
                row["tokens_n"] = float(s.tok_n)
            p95 = s.latency.quantile(TAIL_Q)
            if p95 is not None:
                row["latency_p95_ms"] = p95
                if latency_p95 is not None:
                    row["tail_share"] = s.latency.share_outside(0.0, latency_p95)
            out[key] = row
        return out

    def _totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for key, s in self.stats.items():
            dim = key.partition("=")[0]
            totals[dim] = totals.get(dim, 0) + s.n
        return totals


@dataclass(frozen=True)
class Contribution:
    """One segment's part of a signal's change: ``contribution`` in the signal's unit (nats of
    KL, rate, mean, share of slow turns); ``before``/``now`` the segment's own value."""

    dimension: str
    segment: str
    contribution: float
    before: float | None
    now: float | None
    share_before: float
    share_now: float
    n: int
    excess: float = 0.0  # contribution beyond the segment's share of its dimension's total

    def line(self, unit: str) -> str:
        def f(v: float | None) -> str:
            return "—" if v is None else f"{v:.3g}"

        return (
            f"{self.dimension}={self.segment}: {self.contribution:+.3g}{unit} "
            f"({f(self.before)} -> {f(self.now)}, share {self.share_before:.0%} -> "
            f"{self.share_now:.0%}, {self.n} turns)"
        )


def kl_terms(
    window_counts: Mapping[str, int], baseline: Mapping[str, float], smoothing: float = 0.5
) -> dict[str, tuple[float, float, float]]:
    """Per intent: (p, q, p log(p/q)) with the smoothing of :func:`streams.logic.drift.
    kl_divergence`; the terms sum to the divergence."""
    keys = sorted(set(window_counts) | set(baseline))
    if not keys:
        return {}
    n = sum(window_counts.values())
    den = n + smoothing * len(keys)
    b_total = sum(baseline.values()) or 1.0
    out = {}
    for key in keys:
        p = (window_counts.get(key, 0) + smoothing) / den
        q = (baseline.get(key, 0.0) / b_total * n + smoothing) / den
        out[key] = (p, q, p * math.log(p / q))
    return out


def kl_attribution(
    window_counts: Mapping[str, int], baseline: Mapping[str, float], smoothing: float = 0.5
) -> list[Contribution]:
    terms = kl_terms(window_counts, baseline, smoothing)
    b_total = sum(baseline.values()) or 1.0
    n = sum(window_counts.values()) or 1
    return _ranked(
        [
            Contribution(
                "intent",
                k,
                term,
                baseline.get(k, 0.0) / b_total,
                window_counts.get(k, 0) / n,
                baseline.get(k, 0.0) / b_total,
                window_counts.get(k, 0) / n,
                window_counts.get(k, 0),
                term,
            )
            for k, (_p, _q, term) in terms.items()
        ],
        1.0,
    )


# The per-segment value each attributable signal decomposes: (its field in a segment summary,
# the field of the weights in the segment summary, the overall baseline field it falls back to).
_MEANS = {
    "fallback_rate_increase": ("fallback_rate", "n", "fallback_rate"),
    "confidence_drop": ("confidence_mean", "confidence_n", "confidence_mean"),
    "token_usage_change": ("tokens_mean", "tokens_n", "tokens_mean"),
}
UNITS = {
    "intent_distribution_shift": " nats",
    "fallback_rate_increase": "",
    "confidence_drop": "",
    "token_usage_change": " tokens",
    "latency_increase": " of turns slower than the baseline p95",
}
# The drift signals a window's segments explain (the judge's is explained from its own tally).
ATTRIBUTABLE = tuple(UNITS)
UNITS = {**UNITS, "judged_quality_drop": " of the judge score"}


def attribute(
    signal: str,
    window: Segments,
    window_intents: Mapping[str, int],
    baseline: Mapping[str, Any],
    smoothing: float = 0.5,
) -> list[Contribution]:
    """Every segment's contribution to ``signal``'s change between ``baseline`` (a Baseline
    record, with or without ``segments``) and the window, the largest in the direction of the
    change first; per dimension the contributions sum to the total change."""
    if signal == "intent_distribution_shift":
        bi = baseline.get("intent_distribution") or {}
        return kl_attribution(window_intents, bi, smoothing) if bi and window_intents else []
    base_segments: Mapping[str, Mapping[str, float]] = baseline.get("segments") or {}
    p95 = baseline.get("latency_p95_ms")
    now = window.summary(p95)
    if signal == "latency_increase":
        if p95 is None:
            return []
        return decompose(now, base_segments, "tail_share", "n", 1.0 - TAIL_Q)
    if signal in _MEANS:
        field, weight, overall = _MEANS[signal]
        fallback = baseline.get(overall)
        if fallback is None:
            return []
        return decompose(now, base_segments, field, weight, float(fallback))
    return []


def decompose(
    now: Mapping[str, Mapping[str, float]],
    before: Mapping[str, Mapping[str, float]],
    field: str,
    weight: str,
    fallback: float,
) -> list[Contribution]:
    """``w_i m_i - b_i g_i`` per segment, weights normalised per dimension. A baseline without
    segments: each window segment against ``fallback``, weighted by its window share.

    A dimension with a single segment (no channel on any turn, no experiment) says nothing and is
    left out. Segments are ranked by ``excess``, their contribution beyond what their share of the
    window would give under a change spread evenly: a segment that is 15 % of the turns but holds
    80 % of the change comes before one that is 60 % of the turns and holds 60 %."""
    out: list[Contribution] = []
    grand = 0.0
    for dim in DIMENSIONS:
        cur = {k: v for k, v in now.items() if k.startswith(dim + "=")}
        old = {k: v for k, v in before.items() if k.startswith(dim + "=")}
        keys = sorted(set(cur) | set(old))
        w_tot = sum(v.get(weight, 0.0) for v in cur.values() if field in v)
        if not w_tot or len(keys) < 2:
            continue
        b_tot = sum(v.get(weight, 0.0) for v in old.values() if field in v)
        rows = []
        for key in keys:
            c, o = cur.get(key, {}), old.get(key, {})
            w = c.get(weight, 0.0) / w_tot if field in c else 0.0
            m = c.get(field)
            if b_tot:
                b = o.get(weight, 0.0) / b_tot if field in o else 0.0
                g = o.get(field)
            else:  # no segments in the baseline: the whole of it, spread like the window
                b, g = w, fallback
            term = w * (m or 0.0) - b * (g or 0.0)
            rows.append((key, term, g, m, b, w, int(c.get("n", 0.0))))
        total = sum(r[1] for r in rows)
        grand += total
        for key, term, g, m, b, w, n in rows:
            out.append(
                Contribution(dim, key.partition("=")[2], term, g, m, b, w, n, term - w * total)
            )
    return _ranked(out, grand)


def _ranked(rows: list[Contribution], total: float) -> list[Contribution]:
    sign = -1.0 if total < 0 else 1.0
    return sorted(
        rows, key=lambda c: (-sign * c.excess, -sign * c.contribution, c.dimension, c.segment)
    )


def explain(signal: str, contributions: list[Contribution], top: int = 3) -> dict[str, str]:
    """Details for a signal: ``why.1`` .. ``why.<top>`` (one line each, the largest first) and
    ``attribution`` (all of them, JSON), the ones the Slack message and the views show."""
    if not contributions:
        return {}
    unit = UNITS.get(signal, "")
    lines = {f"why.{i + 1}": c.line(unit) for i, c in enumerate(contributions[:top])}
    rows = [
        {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(c).items()}
        for c in contributions
    ]
    return {**lines, "attribution": json.dumps(rows, separators=(",", ":"))}
