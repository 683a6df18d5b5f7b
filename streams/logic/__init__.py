"""Pure, broker-free logic classes (river-style: ``update(x)`` then ``get()``) used by the agents
and by the replay jobs alike."""

from __future__ import annotations

__all__: list[str] = []
