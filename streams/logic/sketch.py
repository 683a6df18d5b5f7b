"""A mergeable quantile sketch with fixed logarithmic buckets (the DDSketch idea).

Every positive value x falls in bucket ``ceil(log_gamma(x))`` with ``gamma = (1+a)/(1-a)``; the
bucket's representative ``2 gamma^k / (gamma + 1)`` is within relative error ``a`` of every value
in it, so any quantile is answered within ``a`` (1 % by default) of the exact order statistic.
State is a dict of integer counts: merging adds counts, serialising is plain JSON.
"""

from __future__ import annotations

import math
from typing import Any


class QuantileSketch:
    def __init__(self, relative_accuracy: float = 0.01) -> None:
        if not 0 < relative_accuracy < 1:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy!r}")
        self.relative_accuracy = relative_accuracy
        self._gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._inv_log_gamma = 1.0 / math.log(self._gamma)
        self._bins: dict[int, int] = {}
        self._zeros = 0  # values <= 0 (latencies of 0 ms); reported as 0
        self.count = 0

    def update(self, x: float) -> None:
        self.add_bucket(self.bucket_of(x))

    def bucket_of(self, x: float) -> int | None:
        """The bucket ``x`` falls in (None: the zeros), for adding one value to many sketches of
        this accuracy with one logarithm."""
        return None if x <= 0 else math.ceil(math.log(x) * self._inv_log_gamma)

    def add_bucket(self, k: int | None) -> None:
        self.count += 1
        if k is None:
            self._zeros += 1
        else:
            self._bins[k] = self._bins.get(k, 0) + 1

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("cannot merge sketches of different accuracy")
        for k, c in other._bins.items():
            self._bins[k] = self._bins.get(k, 0) + c
        self._zeros += other._zeros
        self.count += other.count
        return self

    def _value(self, k: int) -> float:
        return 2 * self._gamma**k / (self._gamma + 1)

    def quantile(self, q: float) -> float | None:
        """The value at rank ``floor(q * (count - 1))`` (0-based), within the relative accuracy."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        if self.count == 0:
            return None
        rank = int(q * (self.count - 1))
        if rank < self._zeros:
            return 0.0
        seen = self._zeros
        for k in sorted(self._bins):
            seen += self._bins[k]
            if seen > rank:
                return self._value(k)
        return self._value(max(self._bins))

    def share_outside(self, low: float, high: float) -> float:
        """Share of values below ``low`` or above ``high`` (bucket resolution)."""
        if self.count == 0:
            return 0.0
        out = self._zeros if low > 0 else 0
        for k, c in self._bins.items():
            v = self._value(k)
            if v < low or v > high:
                out += c
        return out / self.count

    def iqr_outlier_share(self, log_scale: bool = False) -> float:
        """Share of values outside Tukey's fences [Q1 - 1.5 IQR, Q3 + 1.5 IQR]. With ``log_scale``
        the fences are taken on log values, the right scale for multiplicative noise such as
        latencies (a log-normal has ~0.7 % outside, not the ~5 % of linear fences)."""
        q1, q3 = self.quantile(0.25), self.quantile(0.75)
        if q1 is None or q3 is None:
            return 0.0
        if log_scale:
            if q1 <= 0:
                return self.iqr_outlier_share(False)
            spread = (q3 / q1) ** 1.5
            return self.share_outside(q1 / spread, q3 * spread)
        iqr = q3 - q1
        return self.share_outside(q1 - 1.5 * iqr, q3 + 1.5 * iqr)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.relative_accuracy,
            "z": self._zeros,
            "b": {str(k): c for k, c in self._bins.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileSketch:
        s = cls(d.get("a", 0.01))
        s._zeros = int(d.get("z", 0))
        s._bins = {int(k): int(c) for k, c in d.get("b", {}).items()}
        s.count = s._zeros + sum(s._bins.values())
        return s
