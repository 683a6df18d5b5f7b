"""Priority lanes: user requests are never queued behind background work (the LLM-as-judge,
evaluation runs).

Two lanes, two topics: ``inference.requests`` (user) and ``inference.requests.background``. A
partition is a queue, so a lane of its own is the only way a user request never waits behind a
backlog of judge prompts in Kafka; the worker pauses the background topic while its share of
in-flight work is taken. Inside the worker, :class:`LaneScheduler` hands out the engine's slots:

- a user request takes any free slot, ahead of every waiting background request;
- background requests hold at most ``background_slots`` slots, and only while no user request
  waits;
- a user request that finds every slot taken **preempts** a background generation: its cancel
  event is set, the engine stops it within a token, and the worker runs it again later (it was
  not answered, so nothing is lost and nothing is answered twice).

The cost of background work to a user request is then at most one token of a background
generation (plus sharing the CPU or GPU while both run), not a whole generation.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

USER = "user"
BACKGROUND = "background"
LANES = (USER, BACKGROUND)
BACKGROUND_TOPIC = "inference.requests.background"


def lane_of_topic(topic: str, prefix: str = "") -> str:
    """The lane a request record came from, by its topic (with the deployment's prefix)."""
    return BACKGROUND if topic == prefix + BACKGROUND_TOPIC else USER


# OpenAI's ``service_tier``: "flex" is its slower, cheaper tier, the background lane here.
SERVICE_TIERS = {"auto": USER, "default": USER, "priority": USER, "flex": BACKGROUND}
LANE_HEADER = "X-Continuum-Lane"


def lane_of_call(body: Any, headers: Mapping[str, str]) -> str:
    """The lane a chat-completion call asks for: ``service_tier: "flex"`` in the body or the
    ``X-Continuum-Lane: background`` header; user otherwise. Raises ValueError naming the bad
    value."""
    header = headers.get(LANE_HEADER)
    if header is not None:
        if header not in LANES:
            raise ValueError(f"{LANE_HEADER} is {header!r}; expected one of {', '.join(LANES)}")
        return header
    tier = body.get("service_tier") if isinstance(body, dict) else None
    if tier is None:
        return USER
    if tier not in SERVICE_TIERS:
        raise ValueError(
            f"service_tier is {tier!r}; expected one of {', '.join(SERVICE_TIERS)} "
            "(flex: the background lane)"
        )
    return SERVICE_TIERS[tier]


def lane_topic(lane: str) -> str:
    return BACKGROUND_TOPIC if lane == BACKGROUND else "inference.requests"


@dataclass(eq=False)
class Slot:
    """One engine slot held by a request. ``preempt`` is set when a user request needs it back
    (background slots only); the holder's generation is cancelled by it."""

    lane: str
    preempt: threading.Event = field(default_factory=threading.Event)

    @property
    def preempted(self) -> bool:
        return self.preempt.is_set()


class LaneScheduler:
    """Hands out ``slots`` engine slots to the two lanes (see the module docstring).

    Not thread-safe: used from the worker's event loop only."""

    def __init__(self, slots: int, background_slots: int | None = None) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = slots
        # By default background work may use every slot: preemption gives them back at once.
        self.background_slots = max(1, min(slots, background_slots or slots))
        self.free = slots
        self.holders: list[Slot] = []  # in the order they were handed out
        self._waiting: dict[str, deque[asyncio.Future[Slot]]] = {lane: deque() for lane in LANES}
        self.preemptions = 0

    def running(self, lane: str) -> int:
        return sum(1 for s in self.holders if s.lane == lane)

    def waiting(self, lane: str) -> int:
        return sum(1 for f in self._waiting[lane] if not f.done())

    async def acquire(self, lane: str) -> Slot:
        if lane not in LANES:
            raise ValueError(f"lane must be one of {LANES}, got {lane!r}")
        if self._may_start(lane) and not self.waiting(lane):
            return self._hand(lane)
        fut: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self._waiting[lane].append(fut)
        if lane == USER:
            self._preempt_one()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(fut.result())  # handed over just as the waiter went away
            raise

    def release(self, slot: Slot) -> None:
        if slot in self.holders:
            self.holders.remove(slot)
            self.free += 1
        self._wake()

    # -- inside --------------------------------------------------------------------------------

    def _may_start(self, lane: str) -> bool:
        if self.free <= 0:
            return False
        if lane == USER:
            return True
        return not self.waiting(USER) and self.running(BACKGROUND) < self.background_slots

    def _hand(self, lane: str) -> Slot:
        slot = Slot(lane)
        self.holders.append(slot)
        self.free -= 1
        return slot

    def _wake(self) -> None:
        for lane in LANES:  # user first
            queue = self._waiting[lane]
            while queue and self._may_start(lane):
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(self._hand(lane))
        # users still waiting with every slot taken: background slots must come back
        for _ in range(self.waiting(USER)):
            if not self._preempt_one():
                break

    def _preempt_one(self) -> bool:
        """Ask the newest background holder not yet asked to give its slot back (it has done
        the least work); False when none is left to ask or enough are already on their way."""
        if self.free > 0:
            return False
        asked = sum(1 for s in self.holders if s.lane == BACKGROUND and s.preempted)
        if asked >= self.waiting(USER):
            return False
        for slot in reversed(self.holders):
            if slot.lane == BACKGROUND and not slot.preempted:
                slot.preempt.set()
                self.preemptions += 1
                return True
        return False
