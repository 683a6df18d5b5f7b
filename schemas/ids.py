"""Event identity: an event's id says what it is, not when it was computed.

A derived event (an alert transition, a drift signal, the measurement of an answered request)
gets ``stable_id(kind, *inputs)``: replaying the same inputs yields the same id, so every consumer
can de-duplicate on it. Random ids are for things that happen once in the world (a user request).
"""

from __future__ import annotations

import uuid
from collections import deque

_NS = uuid.UUID("6f1c3a52-8f0e-4d8e-9a55-0c0a1b7e2d11")


def stable_id(*parts: object) -> str:
    """A UUID (version 5) of the parts, joined with ``|``."""
    return str(uuid.uuid5(_NS, "|".join(map(str, parts))))


class RecentIds:
    """The last ``size`` ids seen, to de-duplicate on: a bounded set (oldest forgotten first).

    Offsets make a replay exact, but the same event can also reach a consumer twice at two
    offsets (an inference request redelivered and answered again, with the same derived id),
    and a caller can be answered twice (a worker that crashed after answering): those are
    recognised here. Stage 1 rebuilds its sets from the tail of each partition after a restart
    (the log is the state); the worker and the gateway keep theirs in memory."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"dedupe size must be >= 0, got {size}")
        self.size = size
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def seen(self, event_id: str) -> bool:
        """True when ``event_id`` is among the last ``size`` ids; otherwise remember it."""
        if event_id in self._ids:
            return True
        if self.size:
            self._ids.add(event_id)
            self._order.append(event_id)
            if len(self._order) > self.size:
                self._ids.discard(self._order.popleft())
        return False


__all__ = ["RecentIds", "stable_id"]
