"""Statistics at the unit of assignment: sessions, not turns.

Variants are assigned per session (sticky), so the turns of one session are not independent
draws: a session that is slow is slow for all its turns, and a turn-level test counts its evidence
many times over. A metric over turns is a ratio of cluster totals, R = sum(Y_c) / sum(N_c) (Y_c:
the metric's sum over cluster c, N_c: its units), and its cluster-robust (delta-method) variance
over K clusters is

    Var(R) ~ (Var(Y) - 2 R Cov(Y, N) + R^2 Var(N)) / (K * mean(N)^2).

A cluster can be one session or, as the A/B tallies keep them, a fixed hash bucket of whole
sessions (streams.logic.abtest): buckets are independent of each other, so the variance stays
valid with no per-session state."""

from __future__ import annotations

from collections.abc import Sequence


class ClusterSums:
    """K non-empty clusters, and the sums of Y, N, Y^2, N^2 and Y*N over them."""

    __slots__ = ("k", "y", "n", "yy", "nn", "yn")

    def __init__(self) -> None:
        self.k = 0
        self.y = self.n = self.yy = self.nn = self.yn = 0.0

    @classmethod
    def of(cls, ys: Sequence[float], ns: Sequence[float]) -> ClusterSums:
        """From per-cluster totals and unit counts (empty clusters are left out)."""
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
        return max((var_y - 2 * r * cov + r * r * var_n) / (k * mn * mn), 0.0)
