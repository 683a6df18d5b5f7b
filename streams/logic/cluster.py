"""Statistics at the unit of assignment: sessions, not turns.

Variants are assigned per session (sticky), so the turns of one session are not independent
draws: a session that is slow is slow for all its turns. A turn-level test then counts one
session's evidence many times and reports significance that is not there. Here a metric over
turns is a ratio of session totals, R = sum(Y_i) / sum(N_i) (Y_i: the session's sum of the
metric, N_i: its turns), and its variance is the delta-method (cluster-robust) one:

    Var(R) ~ (Var(Y) - 2 R Cov(Y, N) + R^2 Var(N)) / (K * mean(N)^2)

over K sessions. Everything it needs is six mergeable sums, updated as turns arrive from the
session's running totals (kept per session by stage 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ClusterSums:
    """K clusters, and the sums of Y, N, Y^2, N^2 and Y*N over them."""

    __slots__ = ("k", "y", "n", "yy", "nn", "yn")

    def __init__(self) -> None:
        self.k = 0
        self.y = self.n = self.yy = self.nn = self.yn = 0.0

    def add(self, y: float, n: float, old_y: float, old_n: float) -> None:
        """Add ``y`` over ``n`` units to a cluster whose totals were (old_y, old_n); a cluster
        with no unit yet is new."""
        self.k += old_n == 0
        self.y += y
        self.n += n
        self.yy += 2 * old_y * y + y * y
        self.nn += 2 * old_n * n + n * n
        self.yn += old_y * n + old_n * y + y * n

    def merge(self, other: ClusterSums) -> ClusterSums:
        self.k += other.k
        self.y += other.y
        self.n += other.n
        self.yy += other.yy
        self.nn += other.nn
        self.yn += other.yn
        return self

    @property
    def ratio(self) -> float | None:
        return self.y / self.n if self.n else None

    def variance(self) -> float | None:
        """Delta-method variance of the ratio; None with fewer than 2 clusters."""
        k = self.k
        if k < 2 or not self.n:
            return None
        r = self.y / self.n
        my, mn = self.y / k, self.n / k
        var_y = (self.yy - k * my * my) / (k - 1)
        var_n = (self.nn - k * mn * mn) / (k - 1)
        cov = (self.yn - k * my * mn) / (k - 1)
        v = (var_y - 2 * r * cov + r * r * var_n) / (k * mn * mn)
        return max(v, 0.0)

    def to_list(self) -> list[float]:
        return [self.k, self.y, self.n, self.yy, self.nn, self.yn]

    @classmethod
    def from_list(cls, d: Sequence[Any] | None) -> ClusterSums:
        c = cls()
        if d:
            c.k = int(d[0])
            c.y, c.n, c.yy, c.nn, c.yn = (float(x) for x in d[1:6])
        return c

    @classmethod
    def of(cls, ys: Sequence[float], ns: Sequence[float]) -> ClusterSums:
        """From per-cluster totals (tests and offline analysis)."""
        c = cls()
        for y, n in zip(ys, ns, strict=True):
            if n:
                c.k += 1
                c.y += y
                c.n += n
                c.yy += y * y
                c.nn += n * n
                c.yn += y * n
        return c
