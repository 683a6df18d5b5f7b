"""Priority lanes: engine slots go to user requests first; background work is capped and is
preempted by a user request instead of making it wait."""

from __future__ import annotations

import asyncio

import pytest

from inference.lanes import BACKGROUND, USER, LaneScheduler, lane_of_call


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_waiting_user_goes_before_every_waiting_background_request() -> None:
    async def main() -> list[str]:
        lanes = LaneScheduler(1, background_slots=1)
        order: list[str] = []
        first = await lanes.acquire(USER)

        async def take(name: str, lane: str) -> None:
            slot = await lanes.acquire(lane)
            order.append(name)
            await asyncio.sleep(0)
            lanes.release(slot)

        tasks = [asyncio.ensure_future(take(f"bg{i}", BACKGROUND)) for i in range(3)]
        await settle()
        tasks.append(asyncio.ensure_future(take("user", USER)))
        await settle()
        lanes.release(first)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == ["user", "bg0", "bg1", "bg2"]


def test_background_holds_at_most_its_share_and_users_take_the_rest_at_once() -> None:
    async def main() -> None:
        lanes = LaneScheduler(4, background_slots=2)
        bg = [asyncio.ensure_future(lanes.acquire(BACKGROUND)) for _ in range(3)]
        await settle()
        assert sum(t.done() for t in bg) == 2 and lanes.running(BACKGROUND) == 2
        users = [await lanes.acquire(USER) for _ in range(2)]  # no wait, no preemption
        assert lanes.preemptions == 0 and lanes.free == 0
        for s in users:
            lanes.release(s)
        await settle()
        assert not bg[2].done()  # the cap, not the free slots, holds it back
        lanes.release(bg[0].result())
        await settle()
        assert bg[2].done()

    asyncio.run(main())


def test_a_user_preempts_the_newest_background_generation_and_gets_its_slot() -> None:
    async def main() -> None:
        lanes = LaneScheduler(2)
        old = await lanes.acquire(BACKGROUND)
        new = await lanes.acquire(BACKGROUND)
        user = asyncio.ensure_future(lanes.acquire(USER))
        await settle()
        assert new.preempted and not old.preempted and lanes.preemptions == 1
        assert not user.done()
        # A preempted background request asks again: it waits behind the user.
        lanes.release(new)
        again = asyncio.ensure_future(lanes.acquire(BACKGROUND))
        await settle()
        assert user.done() and user.result().lane == USER and not again.done()
        lanes.release(user.result())
        await settle()
        assert again.done()

    asyncio.run(main())


def test_one_preemption_per_waiting_user() -> None:
    async def main() -> None:
        lanes = LaneScheduler(3)
        held = [await lanes.acquire(BACKGROUND) for _ in range(3)]
        users = [asyncio.ensure_future(lanes.acquire(USER)) for _ in range(2)]
        await settle()
        assert [s.preempted for s in held] == [False, True, True]
        assert lanes.preemptions == 2 and not any(u.done() for u in users)

    asyncio.run(main())


def test_a_cancelled_waiter_gives_no_slot_away() -> None:
    async def main() -> None:
        lanes = LaneScheduler(1)
        held = await lanes.acquire(USER)
        waiter = asyncio.ensure_future(lanes.acquire(USER))
        await settle()
        waiter.cancel()
        await settle()
        lanes.release(held)
        assert lanes.free == 1 and lanes.holders == []

    asyncio.run(main())


def test_a_call_picks_its_lane_by_service_tier_or_header_and_bad_values_are_named() -> None:
    assert lane_of_call({"messages": []}, {}) == USER
    assert lane_of_call({"service_tier": "flex"}, {}) == BACKGROUND
    assert lane_of_call({"service_tier": "default"}, {}) == USER
    assert lane_of_call({}, {"X-Continuum-Lane": "background"}) == BACKGROUND
    with pytest.raises(ValueError, match="service_tier is 'slow'; expected one of auto"):
        lane_of_call({"service_tier": "slow"}, {})
    with pytest.raises(ValueError, match="X-Continuum-Lane is 'low'"):
        lane_of_call({}, {"X-Continuum-Lane": "low"})
