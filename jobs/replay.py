"""``continuum replay baseline``: rebuild a model version's ``Baseline`` from history, and
``continuum baseline compare``.

History is Kafka between two timestamps (``offsets_for_times``) or the archive's Avro files. The
statistics are folded by :class:`streams.logic.turns.TurnStats` (chat turns) or
:class:`streams.logic.predictions.PredictionStats` (a predictive model's ``predictions``) and
summarised by :func:`streams.logic.evaluation.baseline_event`, the very code the live drift agents
use, so live and backfilled numbers agree. Memory is bounded on any history length (the state is a fixed-size
sketch and running moments), and a checkpoint file (position + state, written atomically every
``checkpoint_every`` events) lets an interrupted replay resume where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from confluent_kafka import Consumer, TopicPartition

from continuum import kafka as clients
from continuum.settings import Settings
from continuum.topics import topic_spec
from jobs.archive import archive_files, read_archive
from jobs.topicread import read_to_end
from producers.schema_topic import decoder_for
from streams.logic.drift import kl_divergence
from streams.logic.evaluation import baseline_event
from streams.logic.predictions import PredictionStats
from streams.logic.turns import TurnStats


class ReplaySource(NamedTuple):
    """What a replay reads: the topic, its record type, the statistics it folds into, and the
    field that names an event's arm."""

    topic: str
    schema: str
    stats: type[TurnStats]
    arm: str


SOURCES = {
    "turns": ReplaySource("chat.turns", "ChatTurn", TurnStats, "variant"),
    "predictions": ReplaySource("predictions", "Prediction", PredictionStats, "phase"),
}

Progress = Callable[[int, int | None], None]  # (events read, events expected or None)


@dataclass
class ReplayState:
    """What a checkpoint holds: where the source is and what was folded so far."""

    source: str
    position: dict[str, int] = field(default_factory=dict)  # kafka: "partition" -> next offset
    read: int = 0  # records read from the source (archive position)
    stats: TurnStats = field(default_factory=TurnStats)

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "position": self.position,
                "read": self.read,
                "stats": self.stats.to_dict(),
            }
        )

    @classmethod
    def from_json(cls, text: str, stats: type[TurnStats] = TurnStats) -> ReplayState:
        raw = json.loads(text)
        return cls(raw["source"], raw["position"], raw["read"], stats.from_dict(raw["stats"]))


@dataclass(frozen=True)
class ReplaySpec:
    model_version: str
    start_ms: int | None = None
    end_ms: int | None = None  # inclusive
    variant: str | None = None  # the arm: a turn's variant, a prediction's phase
    kind: str = "turns"  # or "predictions"

    def __post_init__(self) -> None:
        if self.kind not in SOURCES:
            raise ValueError(f"replay kind must be one of {', '.join(SOURCES)}, got {self.kind!r}")

    def wants(self, turn: Mapping[str, Any]) -> bool:
        if turn.get("model_version") != self.model_version:
            return False
        if self.variant is not None and turn.get(SOURCES[self.kind].arm) != self.variant:
            return False
        t = turn.get("event_time")
        if t is None:
            return False
        t = int(t.timestamp() * 1000) if hasattr(t, "timestamp") else int(t)
        return (self.start_ms is None or t >= self.start_ms) and (
            self.end_ms is None or t <= self.end_ms
        )


class BaselineReplay:
    def __init__(
        self,
        spec: ReplaySpec,
        *,
        checkpoint: Path | None = None,
        checkpoint_every: int = 100_000,
        progress: Progress | None = None,
        max_lateness_s: float | None = None,
    ) -> None:
        self.spec = spec
        self.max_lateness_s = max_lateness_s
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.progress = progress or (lambda n, total: None)

    def _resume(self, source: str) -> ReplayState:
        stats = SOURCES[self.spec.kind].stats
        if self.checkpoint is not None and self.checkpoint.exists():
            state = ReplayState.from_json(self.checkpoint.read_text(), stats)
            if state.source != source:
                raise ValueError(
                    f"checkpoint {self.checkpoint} is for {state.source!r}, not {source!r}; "
                    "delete it to start over"
                )
            return state
        return ReplayState(source, stats=stats())

    def _save(self, state: ReplayState) -> None:
        if self.checkpoint is None:
            return
        tmp = self.checkpoint.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(self.checkpoint)

    def _finish(self, state: ReplayState) -> dict[str, Any]:
        if state.stats.n == 0:
            raise ValueError(
                f"no {self.spec.kind} of {self.spec.model_version!r} between the given times; "
                "nothing to build a baseline from"
            )
        event = baseline_event(
            self.spec.model_version,
            state.stats,
            "replay",
            int(time.time() * 1000),
            self.spec.variant,
        )
        if self.checkpoint is not None and self.checkpoint.exists():
            self.checkpoint.unlink()  # done: a later run starts fresh
        return event

    # -- sources -----------------------------------------------------------------------------

    def from_archive(self, root: Path, topic: str | None = None) -> dict[str, Any]:
        topic = topic or SOURCES[self.spec.kind].topic
        files = archive_files(root, topic, self.spec.start_ms, self.spec.end_ms)
        source = f"archive:{root}/{topic}:{self.spec}"
        state = self._resume(source)
        for rec in read_archive(files, skip=state.read):
            state.read += 1
            if self.spec.wants(rec):
                state.stats.update(rec)
            if state.read % self.checkpoint_every == 0:
                self._save(state)
                self.progress(state.read, None)
        self.progress(state.read, None)
        return self._finish(state)

    def from_kafka(self, settings: Settings, topic: str | None = None) -> dict[str, Any]:
        topic = topic or SOURCES[self.spec.kind].topic
        schema = SOURCES[self.spec.kind].schema
        name = topic_spec(topic).full_name(settings.topic_prefix)
        source = f"kafka:{settings.bootstrap_servers}/{name}:{self.spec}"
        state = self._resume(source)
        c = clients.consumer(settings, "continuum-replay")
        decoder = decoder_for(settings)
        try:
            parts = sorted(c.list_topics(name, timeout=10).topics[name].partitions)
            starts, ends = self._bounds(c, name, parts)
            for p in parts:
                if str(p) in state.position:
                    starts[p] = state.position[str(p)]
            todo = {p for p in parts if starts[p] < ends[p]}
            total = sum(max(0, ends[p] - starts[p]) for p in parts) + state.read
            c.assign([TopicPartition(name, p, starts[p]) for p in todo])
            since_save = 0
            while todo:
                for m in c.consume(1000, 1.0):
                    if m.error():
                        continue
                    p = m.partition()
                    if p not in todo or m.offset() >= ends[p]:
                        continue
                    state.read += 1
                    since_save += 1
                    rec = decoder.decode(m.value() or b"", schema).record
                    if self.spec.wants(rec):
                        state.stats.update(rec)
                    state.position[str(p)] = m.offset() + 1
                    if m.offset() + 1 >= ends[p]:
                        todo.discard(p)
                if since_save >= self.checkpoint_every:
                    self._save(state)
                    self.progress(state.read, total)
                    since_save = 0
            self.progress(state.read, total)
        finally:
            c.close()
        return self._finish(state)

    def _bounds(
        self, c: Consumer, name: str, parts: list[int]
    ) -> tuple[dict[int, int], dict[int, int]]:
        """Offsets to read per partition. Kafka's record timestamps are produce times, and an
        event is produced at or after its ``event_time``, so ``offsets_for_times(start)`` is a
        safe lower bound. An upper bound by time would miss late events: the end is the topic's
        end when the replay starts, unless ``max_lateness_s`` says how late events may come."""
        lows, highs = {}, {}
        for p in parts:
            lows[p], highs[p] = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)

        def at(ms: int | None, default: dict[int, int]) -> dict[int, int]:
            if ms is None:
                return dict(default)
            found = c.offsets_for_times([TopicPartition(name, p, ms) for p in parts], timeout=10)
            # -1: no record at or after that time: the partition's end.
            return {
                tp.partition: highs[tp.partition] if tp.offset < 0 else tp.offset for tp in found
            }

        slack = int((self.max_lateness_s or 0) * 1000)
        start = None if self.spec.start_ms is None else self.spec.start_ms - slack
        end = None
        if self.spec.end_ms is not None and self.max_lateness_s is not None:
            end = self.spec.end_ms + slack + 1
        return at(start, lows), at(end, highs)


# -- compare ---------------------------------------------------------------------------------

COMPARED = (
    "sample_size",
    "confidence_mean",
    "confidence_variance",
    "fallback_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "tokens_mean",
)


def compare_baselines(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of (statistic, A, B, relative change B vs A) plus the intent-mix KL divergence."""
    rows = []
    for key in COMPARED:
        va, vb = a.get(key), b.get(key)
        change = None
        if va not in (None, 0) and vb is not None:
            change = (vb - va) / abs(va)
        rows.append({"stat": key, "a": va, "b": vb, "change": change})
    for key in sorted(set(a.get("metrics") or {}) | set(b.get("metrics") or {})):
        va, vb = (a.get("metrics") or {}).get(key), (b.get("metrics") or {}).get(key)
        change = (vb - va) / abs(va) if va not in (None, 0) and vb is not None else None
        rows.append({"stat": key, "a": va, "b": vb, "change": change})
    ia, ib = a.get("intent_distribution") or {}, b.get("intent_distribution") or {}
    if ia and ib:
        n = max(int(b.get("sample_size") or 0), 1)
        counts = {k: v * n for k, v in ib.items()}
        kl = kl_divergence({k: round(c) for k, c in counts.items()}, ia)
        rows.append({"stat": "intent_kl_divergence", "a": 0.0, "b": kl, "change": None})
    return rows


def close_enough(a: Mapping[str, Any], b: Mapping[str, Any], rel: float = 0.01) -> list[str]:
    """Statistics where two baselines differ by more than ``rel`` (the sketch's stated error
    for quantiles); an empty list means they agree."""
    bad = []
    for key in COMPARED:
        va, vb = a.get(key), b.get(key)
        if va is None or vb is None:
            if va != vb:
                bad.append(key)
        elif not math.isclose(va, vb, rel_tol=rel, abs_tol=1e-9):
            bad.append(f"{key}: {va} vs {vb}")
    for k in set(a.get("intent_distribution") or {}) | set(b.get("intent_distribution") or {}):
        va = (a.get("intent_distribution") or {}).get(k, 0.0)
        vb = (b.get("intent_distribution") or {}).get(k, 0.0)
        if not math.isclose(va, vb, abs_tol=1e-9):
            bad.append(f"intent {k}: {va} vs {vb}")
    return bad


def latest_baselines(settings: Settings, timeout_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """The newest Baseline per model version (and per variant) on the compacted topic."""
    out: dict[str, dict[str, Any]] = {}
    for rec in read_to_end(settings, "baselines", timeout_s):
        variant = rec.get("variant")
        out[rec["model_version"] if variant is None else f"{rec['model_version']}/{variant}"] = rec
    return out


def load_baseline(ref: str, settings: Settings) -> dict[str, Any]:
    """A baseline from a JSON file, or the newest one of a model version on the topic."""
    path = Path(ref)
    if path.exists():
        return dict(json.loads(path.read_text()))
    found = latest_baselines(settings).get(ref)
    if found is None:
        raise ValueError(
            f"{ref!r} is neither a baseline JSON file nor a model version on the baselines topic"
        )
    return found


def default_checkpoint(settings: Settings, model_version: str) -> Path:
    return settings.home / f"replay-{model_version}.checkpoint.json"
