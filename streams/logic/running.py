"""Running mean and variance (Welford), mergeable with Chan's formula, serialisable as 3 numbers."""

from __future__ import annotations

import math
from typing import Any


class RunningStats:
    __slots__ = ("n", "mean", "m2")

    def __init__(self, n: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.n, self.mean, self.m2 = n, mean, m2

    def update(self, x: float) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    def merge(self, other: RunningStats) -> RunningStats:
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.m2 = other.n, other.mean, other.m2
            return self
        n = self.n + other.n
        d = other.mean - self.mean
        self.mean += d * other.n / n
        self.m2 += other.m2 + d * d * self.n * other.n / n
        self.n = n
        return self

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1); 0 below two observations."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RunningStats:
        d = d or {}
        return cls(int(d.get("n", 0)), float(d.get("mean", 0.0)), float(d.get("m2", 0.0)))

    def __repr__(self) -> str:
        return f"RunningStats(n={self.n}, mean={self.mean:.6g}, var={self.variance:.6g})"
