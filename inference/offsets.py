"""Commit positions for a consumer that finishes records out of order.

The worker keeps many requests in flight and they finish in any order, so the offset it may commit
for a partition is the lowest one not yet answered (the *watermark*). Records above the watermark
that are already answered are written into the commit's metadata string; after a crash the next
owner of the partition reads them back and skips them, so a request answered before the crash is
not generated and answered again.
"""

from __future__ import annotations

from collections.abc import Iterable

# Kafka's default offset.metadata.max.bytes is 4096; stay well inside it.
MAX_METADATA = 3000
PREFIX = "done:"


def encode_done(watermark: int, done: Iterable[int]) -> str:
    """``done:`` then offsets above the watermark as deltas from it, runs as ``a-b``."""
    deltas = sorted(o - watermark for o in done if o >= watermark)
    parts: list[str] = []
    i = 0
    while i < len(deltas):
        j = i
        while j + 1 < len(deltas) and deltas[j + 1] == deltas[j] + 1:
            j += 1
        parts.append(str(deltas[i]) if i == j else f"{deltas[i]}-{deltas[j]}")
        i = j + 1
    text = PREFIX + ",".join(parts)
    if len(text) > MAX_METADATA:  # never refuse a commit; losing the hint only risks a re-answer
        return PREFIX
    return text


def decode_done(watermark: int, metadata: str | None) -> set[int]:
    """Offsets recorded as answered by :func:`encode_done`; anything unreadable gives none."""
    if not metadata or not metadata.startswith(PREFIX):
        return set()
    out: set[int] = set()
    try:
        for part in filter(None, metadata[len(PREFIX) :].split(",")):
            lo, _, hi = part.partition("-")
            a = int(lo)
            b = int(hi) if hi else a
            if a < 0 or b < a or b - a > 100_000:
                return set()
            out.update(range(watermark + a, watermark + b + 1))
    except ValueError:
        return set()
    return out


class PartitionOffsets:
    """In-flight and answered offsets of one partition."""

    def __init__(self, start: int | None = None, done: Iterable[int] = ()) -> None:
        self.inflight: set[int] = set()
        self.done: set[int] = set(done)  # answered, above the watermark
        self.high = start  # next offset expected from the log (None until the first record)

    def begin(self, offset: int) -> bool:
        """Record the arrival of ``offset``; False if it was already answered (skip it)."""
        if self.high is None or offset >= self.high:
            self.high = offset + 1
        if offset in self.done:
            return False
        self.inflight.add(offset)
        return True

    def finish(self, offset: int) -> None:
        self.inflight.discard(offset)
        self.done.add(offset)

    def watermark(self) -> int | None:
        """The offset to commit: everything below it is answered."""
        if self.inflight:
            low = min(self.inflight)
        elif self.high is not None:
            low = self.high
        else:
            return None
        # Drop what the watermark has passed; keep answered offsets above it for the metadata.
        self.done = {o for o in self.done if o >= low}
        return low

    def metadata(self, watermark: int) -> str:
        return encode_done(watermark, self.done)


class OffsetBook:
    """:class:`PartitionOffsets` for every assigned partition, with what changed since the last
    commit so the committer writes only when there is something new."""

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], PartitionOffsets] = {}
        self._committed: dict[tuple[str, int], tuple[int, str]] = {}

    def assign(
        self, topic: str, partition: int, committed: int | None, metadata: str | None
    ) -> None:
        start = committed if committed is not None and committed >= 0 else None
        done = decode_done(start, metadata) if start is not None else set()
        self.partitions[(topic, partition)] = PartitionOffsets(start, done)
        if start is not None:
            self._committed[(topic, partition)] = (start, metadata or "")

    def revoke(self, topic: str, partition: int) -> None:
        self.partitions.pop((topic, partition), None)
        self._committed.pop((topic, partition), None)

    def begin(self, topic: str, partition: int, offset: int) -> bool:
        part = self.partitions.get((topic, partition))
        if part is None:  # a record from a partition we were never told about
            part = self.partitions[(topic, partition)] = PartitionOffsets()
        return part.begin(offset)

    def finish(self, topic: str, partition: int, offset: int) -> None:
        part = self.partitions.get((topic, partition))
        if part is not None:
            part.finish(offset)

    def inflight(self) -> int:
        return sum(len(p.inflight) for p in self.partitions.values())

    def to_commit(self) -> list[tuple[str, int, int, str]]:
        """``(topic, partition, offset, metadata)`` that differ from the last commit."""
        out = []
        for key, part in self.partitions.items():
            wm = part.watermark()
            if wm is None:
                continue
            meta = part.metadata(wm)
            if self._committed.get(key) != (wm, meta):
                out.append((key[0], key[1], wm, meta))
        return out

    def committed(self, topic: str, partition: int, offset: int, metadata: str) -> None:
        if (topic, partition) in self.partitions:
            self._committed[(topic, partition)] = (offset, metadata)
