"""``TurnStats``: everything drift detection needs to know about a set of chat turns, as plain
mergeable data. One per (model version, time bucket, source partition); a rolling window
is the merge of its buckets, and a baseline is the summary of one big merge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.logic.attribution import Segments
from streams.logic.running import RunningStats
from streams.logic.semantic import SAMPLE_K, WINDOW_K, QuerySample
from streams.logic.sketch import QuantileSketch

# Fields whose absence counts towards the data-quality null rate.
QUALITY_FIELDS = ("intent", "confidence", "prompt_tokens", "completion_tokens")
MIN_CONFIDENCE = 0.75  # the dispatch seed's minimum confidence; below it a turn is "low confidence"


class TurnStats:
    def __init__(self) -> None:
        self.n = 0
        self.fallbacks = 0
        self.leads = 0
        self.low_confidence = 0
        self.confidence = RunningStats()
        self.tokens = RunningStats()
        self.latency = QuantileSketch()
        self.intents: dict[str, int] = {}
        self.segments = Segments()  # by intent, channel, arm: what changed, when a signal moves
        self.queries = QuerySample()  # what users ask (semantic drift)
        self.nulls: dict[str, int] = {}
        self.rows_with_null = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    def update(self, turn: Mapping[str, Any]) -> None:
        self.n += 1
        self.fallbacks += bool(turn.get("is_fallback"))
        self.leads += bool(turn.get("lead_captured"))
        conf = turn.get("confidence")
        if conf is not None:
            self.confidence.update(conf)
            self.low_confidence += conf < MIN_CONFIDENCE
        pt, ct = turn.get("prompt_tokens"), turn.get("completion_tokens")
        if pt is not None and ct is not None:
            self.tokens.update(pt + ct)
        self.latency.update(turn["latency_ms"])
        intent = turn.get("intent")
        if intent is not None:
            self.intents[intent] = self.intents.get(intent, 0) + 1
        missing = False
        for f in QUALITY_FIELDS:
            if turn.get(f) is None:
                self.nulls[f] = self.nulls.get(f, 0) + 1
                missing = True
        self.rows_with_null += missing
        self.segments.update(turn)
        if turn.get("event_id"):
            self.queries.add(str(turn["event_id"]), turn.get("user_query"))
        self._span(turn.get("event_time"))

    def _span(self, t: int | None) -> None:
        """Widen [first_ms, last_ms] to cover event time ``t``."""
        if t is not None:
            self.first_ms = t if self.first_ms is None else min(self.first_ms, t)
            self.last_ms = t if self.last_ms is None else max(self.last_ms, t)

    def merge(self, other: TurnStats) -> TurnStats:
        self.n += other.n
        self.fallbacks += other.fallbacks
        self.leads += other.leads
        self.low_confidence += other.low_confidence
        self.confidence.merge(other.confidence)
        self.tokens.merge(other.tokens)
        self.latency.merge(other.latency)
        for k, c in other.intents.items():
            self.intents[k] = self.intents.get(k, 0) + c
        for k, c in other.nulls.items():
            self.nulls[k] = self.nulls.get(k, 0) + c
        self.rows_with_null += other.rows_with_null
        self.segments.merge(other.segments)
        self.queries.merge(other.queries, k=WINDOW_K)
        for t in (other.first_ms, other.last_ms):
            if t is not None:
                self.first_ms = t if self.first_ms is None else min(self.first_ms, t)
                self.last_ms = t if self.last_ms is None else max(self.last_ms, t)
        return self

    # -- derived ----------------------------------------------------------------------------

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.n if self.n else 0.0

    @property
    def null_rate(self) -> float:
        return self.rows_with_null / self.n if self.n else 0.0

    def intent_distribution(self) -> dict[str, float]:
        total = sum(self.intents.values())
        return {k: c / total for k, c in sorted(self.intents.items())} if total else {}

    def summary(self) -> dict[str, Any]:
        """The statistics a Baseline record carries (same field names)."""
        p95 = self.latency.quantile(0.95)
        return {
            "sample_size": self.n,
            "confidence_mean": self.confidence.mean if self.confidence.n else None,
            "confidence_variance": self.confidence.variance if self.confidence.n > 1 else None,
            "fallback_rate": self.fallback_rate if self.n else None,
            "latency_p50_ms": self.latency.quantile(0.50),
            "latency_p95_ms": p95,
            "latency_p99_ms": self.latency.quantile(0.99),
            "tokens_mean": self.tokens.mean if self.tokens.n else None,
            "intent_distribution": self.intent_distribution(),
            "metrics": {
                "lead_rate": self.leads / self.n if self.n else 0.0,
                "null_rate": self.null_rate,
                "low_confidence_rate": self.low_confidence / self.confidence.n
                if self.confidence.n
                else 0.0,
                "latency_outlier_share": self.latency.iqr_outlier_share(log_scale=True),
            },
            "segments": self.segments.summary(p95),
            "query_sample": self.queries.queries(),
            "window_start": self.first_ms,
            "window_end": self.last_ms,
        }

    # -- plain data --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "fb": self.fallbacks,
            "lead": self.leads,
            "low": self.low_confidence,
            "conf": self.confidence.to_dict(),
            "tok": self.tokens.to_dict(),
            "lat": self.latency.to_dict(),
            "int": dict(self.intents),
            "nul": dict(self.nulls),
            "rnul": self.rows_with_null,
            "seg": self.segments.to_dict(),
            "qs": self.queries.to_list(),
            "t0": self.first_ms,
            "t1": self.last_ms,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TurnStats:
        s = cls()
        s.n, s.fallbacks, s.leads = int(d["n"]), int(d["fb"]), int(d["lead"])
        s.low_confidence = int(d.get("low", 0))
        s.confidence = RunningStats.from_dict(d["conf"])
        s.tokens = RunningStats.from_dict(d["tok"])
        s.latency = QuantileSketch.from_dict(d["lat"])
        s.intents = {k: int(v) for k, v in d["int"].items()}
        s.nulls = {k: int(v) for k, v in d["nul"].items()}
        s.rows_with_null = int(d["rnul"])
        s.segments = Segments.from_dict(d.get("seg"))
        s.queries = QuerySample.from_list(d.get("qs"), k=max(len(d.get("qs") or []), SAMPLE_K))
        s.first_ms, s.last_ms = d.get("t0"), d.get("t1")
        return s

    @classmethod
    def of(cls, turns: Any) -> TurnStats:
        s = cls()
        for t in turns:
            s.update(t)
        return s
