from __future__ import annotations

from collections import Counter

import pytest

from producers.assignment import (
    CONTROL,
    TREATMENT,
    RandomAssigner,
    RoundRobinAssigner,
    StickyAssigner,
    TimeBasedAssigner,
    WeightBasedAssigner,
    make_assigner,
    session_bucket,
)

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC = 20:00 the day before in Santo Domingo


def test_random_is_seeded_and_near_share() -> None:
    a, b = RandomAssigner(0.5, seed=1), RandomAssigner(0.5, seed=1)
    xs = [a.assign(f"s{i}", T0) for i in range(10_000)]
    assert xs == [b.assign(f"s{i}", T0) for i in range(10_000)]
    assert abs(Counter(xs)[TREATMENT] / 10_000 - 0.5) < 0.02


@pytest.mark.parametrize("share", [0.5, 0.25, 0.1, 1.0, 0.0])
def test_round_robin_hits_the_share_exactly(share: float) -> None:
    a = RoundRobinAssigner(share)
    xs = [a.assign("s", T0) for _ in range(100)]
    assert Counter(xs)[TREATMENT] == round(100 * share)


def test_round_robin_alternates_at_half() -> None:
    a = RoundRobinAssigner(0.5)
    assert [a.assign("s", T0) for _ in range(4)] == [CONTROL, TREATMENT, CONTROL, TREATMENT]


def test_sticky_keeps_a_session_on_one_arm_and_splits_by_share() -> None:
    a = StickyAssigner(0.3, salt="exp1")
    assert {a.assign("abc", T0 + i) for i in range(50)} == {a.assign("abc", T0)}
    share = Counter(a.assign(f"s{i}", T0) for i in range(20_000))[TREATMENT] / 20_000
    assert abs(share - 0.3) < 0.015
    # Another experiment (salt) shuffles sessions independently.
    assert session_bucket("abc", "exp1") != session_bucket("abc", "exp2")


def test_time_based_uses_local_peak_hours() -> None:
    a = TimeBasedAssigner(peak_share=0.0, offpeak_share=1.0, peak_hours=(10,), utc_offset_hours=-4)
    ten_am_local = T0 + 14 * 3_600_000  # 14:00 UTC
    assert a.is_peak(ten_am_local) and not a.is_peak(T0)
    assert a.assign("s", ten_am_local) == CONTROL
    assert a.assign("s", T0) == TREATMENT


def test_weight_based_rollout_only_moves_sessions_towards_treatment() -> None:
    a = WeightBasedAssigner([(T0, 0.1), (T0 + 1000, 0.5), (T0 + 2000, 1.0)])
    sessions = [f"s{i}" for i in range(2000)]
    shares = []
    before: set[str] = set()
    for t in (T0, T0 + 1000, T0 + 2000):
        now = {s for s in sessions if a.assign(s, t) == TREATMENT}
        assert before <= now
        before = now
        shares.append(len(now) / len(sessions))
    assert abs(shares[0] - 0.1) < 0.03 and abs(shares[1] - 0.5) < 0.04 and shares[2] == 1.0
    assert a.share_at(T0 - 1) == 0.0


def test_factory_and_errors() -> None:
    assert isinstance(make_assigner("sticky", 0.5), StickyAssigner)
    with pytest.raises(ValueError, match="unknown assignment strategy 'coin'"):
        make_assigner("coin")
    with pytest.raises(ValueError, match="between 0 and 1, got 1.5"):
        StickyAssigner(1.5)


def test_time_based_peak_hours_and_share_come_from_the_experiment() -> None:
    a = make_assigner(
        "TIME_BASED", 0.5, salt="x", metadata={"peak_hours": "9-11,17", "peak_split": "10"}
    )
    assert isinstance(a, TimeBasedAssigner)
    assert a.peak_hours == (9, 10, 11, 17) and a.peak_share == 0.1 and a.offpeak_share == 0.5
    with pytest.raises(ValueError, match="peak_hours"):
        make_assigner("TIME_BASED", 0.5, metadata={"peak_hours": "25"})
