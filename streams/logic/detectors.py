"""Online change detection on one metric of one stream (latency, confidence), with river.

Values are standardised against a warm-up estimate (log first for latencies, whose noise is
multiplicative) so one set of detector settings fits every metric and model. Page-Hinkley watches
both directions; ADWIN watches the mean of a sliding window. After a detection the detector
re-learns the new level, so it flags changes, not levels: a sustained shift fires once.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from river import drift

from streams.logic.running import RunningStats


@dataclass(frozen=True)
class ChangePoint:
    metric: str
    detector: str  # page_hinkley | adwin
    direction: str  # up | down
    at: int  # observations seen by the detector when it fired
    before: float  # warm-up mean (original units)
    recent: float  # mean of the last 50 observations (original units)


class ChangeDetector:
    def __init__(
        self,
        metric: str,
        *,
        log_scale: bool = False,
        warmup: int = 200,
        ph_delta: float = 0.5,
        ph_threshold: float = 25.0,
        adwin_delta: float = 1e-4,
    ) -> None:
        self.metric = metric
        self.log_scale = log_scale
        self.warmup = warmup
        self.ph_delta, self.ph_threshold, self.adwin_delta = ph_delta, ph_threshold, adwin_delta
        self.seen = 0
        self._reset()

    def _reset(self) -> None:
        self._ref = RunningStats()
        # alpha=1: the classical (unfaded) test. With river's default fading (0.9999) the sum's
        # stationary spread is ~70 standard units, so threshold 50 fired on clean streams.
        self._ph = drift.PageHinkley(
            min_instances=30,
            delta=self.ph_delta,
            threshold=self.ph_threshold,
            alpha=1.0,
            mode="both",
        )
        self._recent: deque[float] = deque(maxlen=50)
        self._adwin = drift.ADWIN(delta=self.adwin_delta)  # type: ignore[no-untyped-call]

    def _scale(self, x: float) -> float:
        return math.log(max(x, 1e-9)) if self.log_scale else x

    def _unscale(self, y: float) -> float:
        return math.exp(y) if self.log_scale else y

    def update(self, x: float) -> ChangePoint | None:
        self.seen += 1
        y = self._scale(x)
        if self._ref.n < self.warmup:
            self._ref.update(y)
            return None
        sd = self._ref.std or 1e-9
        z = (y - self._ref.mean) / sd
        self._recent.append(y)
        self._ph.update(z)  # type: ignore[no-untyped-call]
        self._adwin.update(z)  # type: ignore[no-untyped-call]
        fired = (
            "page_hinkley"
            if self._ph.drift_detected
            else "adwin"
            if self._adwin.drift_detected
            else None
        )
        if fired is None:
            return None
        recent = sum(self._recent) / len(self._recent)
        point = ChangePoint(
            self.metric,
            fired,
            "up" if recent > self._ref.mean else "down",
            self.seen,
            self._unscale(self._ref.mean),
            self._unscale(recent),
        )
        self._reset()
        return point
