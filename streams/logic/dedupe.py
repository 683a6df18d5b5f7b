"""De-duplication by event id, bounded: the ids of the last N events of one source partition.

Offsets make a replay exact (a partial's watermark), but the same event can also reach a topic
twice at two offsets (an inference request redelivered to a worker answers it again, with the
same derived ``event_id``); those are recognised here. The set is rebuilt after a restart or
rebalance from the tail of the partition itself (the log is the state)."""

from __future__ import annotations

from collections import deque


class RecentIds:
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
