"""``continuum archive``: sink topics to Avro container files, one per topic, day and partition,
so history outlives Kafka retention; ``continuum replay --from-archive`` reads them.

Layout: ``{root}/{topic}/{YYYY-MM-DD}/part-{partition}.avro`` (the day is the event's
``event_time`` in UTC), deflate-compressed, written with the current reader schema (old writers
are resolved to it on the way in; unreadable records go to the topic's DLQ).

Exactly once into the files: after every batch the files are flushed and fsynced, then a state
file per partition records the next Kafka offset and the size of every file it wrote to. On
start (and on every partition assignment) files are cut back to the recorded sizes and the
consumer seeks to the recorded offset, so a crash between writing and checkpointing neither loses
nor duplicates a record. Kafka commits follow the state file (for lag monitoring only).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import KafkaException, TopicPartition

from continuum import kafka as clients
from continuum.settings import Settings
from continuum.topics import topic_spec
from producers.consumer import consume_available
from producers.deadletter import DeadLetterQueue, SafeDecoder
from producers.producer import EventProducer
from producers.schema_topic import decoder_for
from schemas.catalog import default_catalog

log = logging.getLogger(__name__)

CODEC = "deflate"


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def archive_files(
    root: Path, topic: str, start_ms: int | None = None, end_ms: int | None = None
) -> list[Path]:
    """Archive files of a (logical) topic whose day overlaps [start_ms, end_ms], oldest first."""
    base = root / topic
    if not base.is_dir():
        return []
    lo = day_of(start_ms) if start_ms is not None else "0000"
    hi = day_of(end_ms) if end_ms is not None else "9999"
    days = sorted(
        d
        for d in base.iterdir()
        if d.is_dir() and not d.name.startswith("_") and lo <= d.name <= hi
    )
    return [f for d in days for f in sorted(d.glob("part-*.avro"))]


def read_archive(files: Sequence[Path], skip: int = 0) -> Iterator[dict[str, Any]]:
    """Records of the files in order; ``skip`` drops the first records (resuming)."""
    n = 0
    for path in files:
        with path.open("rb") as fo:
            for rec in fastavro.reader(fo):
                n += 1
                if n > skip:
                    yield rec  # type: ignore[misc]


class PartitionState:
    """Next offset to archive and the checkpointed size of each file, for one partition."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset: int | None = None
        self.sizes: dict[str, int] = {}
        if path.exists():
            raw = json.loads(path.read_text())
            self.offset, self.sizes = raw["offset"], raw["sizes"]

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"offset": self.offset, "sizes": self.sizes}))
        with tmp.open("rb") as fo:
            os.fsync(fo.fileno())
        tmp.replace(self.path)

    def repair(self, root: Path, name: str, partition: int) -> None:
        """Cut every file back to its checkpointed size, and remove files begun after the last
        checkpoint (drop what a crash left half-done)."""
        newest = max((k.split("/")[1] for k in self.sizes), default=None)
        for f in (root / name).glob(f"*/part-{partition}.avro"):
            rel = f"{name}/{f.parent.name}/{f.name}"
            if f.parent.name.startswith("_") or rel in self.sizes:
                continue
            if self.offset is None or (newest is not None and f.parent.name > newest):
                f.unlink()
                log.warning("archive: removed %s (begun after the last checkpoint)", rel)
        for rel, size in self.sizes.items():
            f = root / rel
            if f.exists() and f.stat().st_size > size:
                with f.open("r+b") as fo:
                    fo.truncate(size)
                log.warning(
                    "archive: cut %s back to %d bytes (written after the last checkpoint)",
                    rel,
                    size,
                )


class ArchiveSink:
    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        *,
        root: Path | None = None,
        group_id: str = "continuum-archive",
        producer: EventProducer | None = None,
    ) -> None:
        self.settings = settings
        self.root = root or settings.home / "archive"
        self.specs = {topic_spec(t).full_name(settings.topic_prefix): topic_spec(t) for t in topics}
        for spec in self.specs.values():
            if spec.schema is None:
                raise ValueError(
                    f"topic {spec.name!r} carries no Avro record type; cannot archive it"
                )
        self.catalog = default_catalog()
        self.producer = producer or EventProducer.from_settings(settings)
        self.decoder = SafeDecoder(
            decoder_for(settings),
            DeadLetterQueue(self.producer.dead_letter_sink),
        )
        self.consumer = clients.consumer(settings, group_id, {"session.timeout.ms": 10_000})
        self.states: dict[tuple[str, int], PartitionState] = {}
        self.stop_event = threading.Event()
        self.archived = 0
        self.consumer.subscribe(list(self.specs), on_assign=self._on_assign)

    def _state(self, topic: str, partition: int) -> PartitionState:
        key = (topic, partition)
        if key not in self.states:
            name = self.specs[topic].name
            d = self.root / name / "_state"
            d.mkdir(parents=True, exist_ok=True)
            self.states[key] = PartitionState(d / f"part-{partition}.json")
        return self.states[key]

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            st = self._state(tp.topic, tp.partition)
            st.repair(self.root, self.specs[tp.topic].name, tp.partition)
            if st.offset is not None:
                tp.offset = st.offset  # the files, not the group's commit, say where we are
        consumer.assign(partitions)

    def poll_once(self, timeout: float = 1.0, max_records: int = 5000) -> int:
        msgs = consume_available(self.consumer, max_records, timeout)
        groups: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
        nexts: dict[tuple[str, int], int] = {}
        for m in msgs:
            if m.error():
                if m.error().fatal():
                    raise KafkaException(m.error())
                continue
            topic, part = m.topic(), m.partition()
            nexts[(topic, part)] = m.offset() + 1
            spec = self.specs[topic]
            rec = self.decoder.decode(
                topic, m.key(), m.value(), expected=spec.schema, partition=part, offset=m.offset()
            )
            if rec is None:
                continue
            ms = rec.get("event_time") or m.timestamp()[1]
            groups[(topic, part, day_of(int(ms)))].append(rec)
        if not nexts:
            return 0
        if self.producer.pending and self.producer.flush(330):
            # Dead letters wait in the producer while Kafka is away (its message timeout, 5 min);
            # nothing is checkpointed before they are acknowledged.
            raise RuntimeError("dead letters not acknowledged; not checkpointing")
        touched: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
        for (topic, part, day), records in groups.items():
            spec = self.specs[topic]
            rel = f"{spec.name}/{day}/part-{part}.avro"
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a+b") as fo:
                fo.seek(0, os.SEEK_END)
                fastavro.writer(
                    fo, self.catalog.current(spec.schema or "").wire, records, codec=CODEC
                )
                fo.flush()
                os.fsync(fo.fileno())
                touched[(topic, part)][rel] = fo.tell()
            self.archived += len(records)
        commits = []
        for (topic, part), nxt in nexts.items():
            st = self._state(topic, part)
            st.offset = nxt
            st.sizes.update(touched.get((topic, part), {}))
            # Keep sizes only for the newest two days: older files are no longer appended to.
            keep = sorted({k.split("/")[1] for k in st.sizes})[-2:]
            st.sizes = {k: v for k, v in st.sizes.items() if k.split("/")[1] in keep}
            st.save()
            commits.append(TopicPartition(topic, part, nxt))
        self.consumer.commit(offsets=commits, asynchronous=True)
        return len(msgs)

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.poll_once(0.5)
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.producer.close(raise_on_failure=False)
