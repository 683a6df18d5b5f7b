"""Variant assignment for A/B tests: which arm serves a session.

Five strategies: the dispatch seed's random 50/50, round robin, time-based (peak/off-peak) and
weight-based gradual rollout, plus sticky-by-session hashing (the default: a user keeps one model
for the whole conversation). Shares are the treatment's fraction of traffic, 0..1.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from producers.producer import epoch_ms

CONTROL = "control"
TREATMENT = "treatment"
STRATEGIES = ("RANDOM", "ROUND_ROBIN", "TIME_BASED", "WEIGHT_BASED", "STICKY")


class Assigner(Protocol):
    def assign(self, session_id: str, now_ms: int) -> str: ...


def _check_share(share: float) -> float:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"treatment share must be between 0 and 1, got {share!r}")
    return share


@dataclass
class RandomAssigner:
    share: float = 0.5
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_share(self.share)
        self._rng = random.Random(self.seed)

    def assign(self, session_id: str, now_ms: int) -> str:
        return TREATMENT if self._rng.random() < self.share else CONTROL


@dataclass
class RoundRobinAssigner:
    """Deterministic interleaving that hits the share exactly over every cycle."""

    share: float = 0.5
    _n: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_share(self.share)

    def assign(self, session_id: str, now_ms: int) -> str:
        self._n += 1
        # Treatment whenever the running quota floor(n*share) grows.
        grew = int(self._n * self.share) > int((self._n - 1) * self.share)
        return TREATMENT if grew else CONTROL


def session_bucket(session_id: str, salt: str = "") -> float:
    """A uniform number in [0, 1) that depends only on the session (and the experiment salt)."""
    digest = hashlib.blake2b(f"{salt}:{session_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class StickyAssigner:
    share: float = 0.5
    salt: str = ""

    def __post_init__(self) -> None:
        _check_share(self.share)

    def assign(self, session_id: str, now_ms: int) -> str:
        return TREATMENT if session_bucket(session_id, self.salt) < self.share else CONTROL


@dataclass
class TimeBasedAssigner:
    """Different shares in peak and off-peak hours (local time at ``utc_offset_hours``; the
    Dominican Republic is UTC-4). Sticky within each period."""

    peak_share: float = 0.2
    offpeak_share: float = 0.5
    peak_hours: Sequence[int] = (9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
    utc_offset_hours: float = -4.0
    salt: str = ""

    def __post_init__(self) -> None:
        _check_share(self.peak_share)
        _check_share(self.offpeak_share)

    def is_peak(self, now_ms: int) -> bool:
        local = datetime.fromtimestamp(
            now_ms / 1000, timezone(timedelta(hours=self.utc_offset_hours))
        )
        return local.hour in self.peak_hours

    def assign(self, session_id: str, now_ms: int) -> str:
        share = self.peak_share if self.is_peak(now_ms) else self.offpeak_share
        return TREATMENT if session_bucket(session_id, self.salt) < share else CONTROL


@dataclass
class WeightBasedAssigner:
    """Gradual rollout: the share steps up at given times ([(start_ms, share), ...]); sticky, so a
    session moved to treatment stays there as the share grows."""

    schedule: Sequence[tuple[int, float]] = ((0, 0.05),)
    salt: str = ""

    def __post_init__(self) -> None:
        if not self.schedule:
            raise ValueError("weight-based rollout needs at least one (start_ms, share) step")
        for _, share in self.schedule:
            _check_share(share)
        self.schedule = sorted(self.schedule)

    def share_at(self, now_ms: int) -> float:
        share = 0.0
        for start, s in self.schedule:
            if now_ms >= start:
                share = s
        return share

    def assign(self, session_id: str, now_ms: int) -> str:
        return (
            TREATMENT if session_bucket(session_id, self.salt) < self.share_at(now_ms) else CONTROL
        )


def peak_hours(text: str) -> tuple[int, ...]:
    """``"7-9,17-19"`` or ``"7,8,9"`` -> the hours (0..23) they name."""
    hours: set[int] = set()
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, _, hi = part.partition("-")
            hours.update(range(int(lo), int(hi or lo) + 1))
    except ValueError as exc:
        raise ValueError(f"peak_hours {text!r}: expected hours like 7-9,17-19") from exc
    if not hours or min(hours) < 0 or max(hours) > 23:
        raise ValueError(f"peak_hours {text!r}: expected hours between 0 and 23")
    return tuple(sorted(hours))


def make_assigner(
    strategy: str,
    share: float = 0.5,
    *,
    salt: str = "",
    seed: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Assigner:
    """Build an assigner from an Experiment's strategy name and treatment share (0..1).
    TIME_BASED reads ``metadata``: ``peak_hours`` (e.g. ``9-18``, Santo Domingo time) and
    ``peak_split`` (the treatment's percent in those hours; default half the split)."""
    s = strategy.upper()
    meta = metadata or {}
    if s == "RANDOM":
        return RandomAssigner(share, seed)
    if s == "ROUND_ROBIN":
        return RoundRobinAssigner(share)
    if s == "STICKY":
        return StickyAssigner(share, salt)
    if s == "TIME_BASED":
        peak = float(meta["peak_split"]) / 100 if meta.get("peak_split") else share / 2
        if meta.get("peak_hours"):
            return TimeBasedAssigner(
                peak_share=peak,
                offpeak_share=share,
                peak_hours=peak_hours(meta["peak_hours"]),
                salt=salt,
            )
        return TimeBasedAssigner(peak_share=peak, offpeak_share=share, salt=salt)
    if s == "WEIGHT_BASED":
        return WeightBasedAssigner(((0, share),), salt)
    raise ValueError(
        f"unknown assignment strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}"
    )


@dataclass(frozen=True)
class Route:
    model: str | None
    experiment_id: str | None = None
    variant: str | None = None


class VariantRouter:
    """Which model serves a call, from the running experiments (pure; the gateway's reply thread
    and the MLClient's experiment follower feed it)."""

    def __init__(self) -> None:
        self.experiments: dict[str, dict[str, Any]] = {}
        self._assigners: dict[str, Assigner] = {}

    def update(self, experiment: Mapping[str, Any]) -> None:
        exp_id = str(experiment["experiment_id"])
        self.experiments[exp_id] = dict(experiment)
        self._assigners[exp_id] = make_assigner(
            str(experiment.get("strategy") or "STICKY"),
            float(experiment.get("traffic_split", 50.0)) / 100.0,
            salt=exp_id,
            metadata=experiment.get("metadata") or {},
        )

    def running(self) -> dict[str, Any] | None:
        live = [e for e in self.experiments.values() if e.get("status") == "RUNNING"]
        return max(live, key=lambda e: epoch_ms(e.get("event_time")), default=None)

    def arm(self, experiment_id: str, unit_id: str, now: int) -> str:
        """The arm of ``unit_id`` in a known experiment (its own assigner)."""
        return self._assigners[experiment_id].assign(unit_id, now)

    def route(self, requested_model: str | None, session_id: str, now: int) -> Route:
        exp = self.running()
        if exp is None or requested_model not in (
            None,
            exp["control_version"],
            exp["experiment_id"],
        ):
            return Route(requested_model)
        variant = self._assigners[exp["experiment_id"]].assign(session_id, now)
        model = exp["control_version"] if variant == CONTROL else exp["treatment_version"]
        return Route(model, exp["experiment_id"], variant)
