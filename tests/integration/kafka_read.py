"""Read a whole topic back in tests (beginning to its current end), with headers."""

from __future__ import annotations

from typing import Any

from continuum.kafka import read_to_end


def read_topic(bootstrap: str, topic: str) -> list[tuple[Any, list[tuple[str, bytes]]]]:
    """Every record of a topic from the beginning to its current end: (value, headers)."""
    return [(m.value(), m.headers() or []) for m in read_to_end(bootstrap, topic)]
