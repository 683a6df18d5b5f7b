"""Event identity: an event's id says what it is, not when it was computed.

A derived event (an alert transition, a drift signal, the measurement of an answered request)
gets ``stable_id(kind, *inputs)``: replaying the same inputs yields the same id, so every consumer
can de-duplicate on it. Random ids are for things that happen once in the world (a user request).
"""

from __future__ import annotations

import uuid

_NS = uuid.UUID("6f1c3a52-8f0e-4d8e-9a55-0c0a1b7e2d11")


def stable_id(*parts: object) -> str:
    """A UUID (version 5) of the parts, joined with ``|``."""
    return str(uuid.uuid5(_NS, "|".join(map(str, parts))))


__all__ = ["stable_id"]
