"""Exactly-once, two-stage aggregation as plain data.

Stage 1 runs per source partition: it folds decoded events into *partials*, one per (kind,
subject, time bucket, source partition). Each partial carries the highest source offset folded
into it (its watermark) inside the same value, so a replay after a crash skips what the stored
partial already holds: the table write is atomic per key, hence no double count.

Stage 2 runs per *group* (a model version or an experiment) and keeps the latest snapshot of
every partial of the group, replacing a stored one only with an equal or newer watermark. A
window is the merge of the group's partials over its buckets and partitions, so two workers
(each owning some partitions) give the same totals as one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, runtime_checkable

from streams.logic.abtest import CONTROL, TREATMENT, ArmTally
from streams.logic.feedback import FeedbackTally
from streams.logic.judge import JudgeTally
from streams.logic.predictions import OutcomeTally, PredictionStats
from streams.logic.turns import TurnStats

TURNS, AB_TURNS, AB_FEEDBACK, FEEDBACK = "turns", "abt", "abf", "fb"
# Predictive models: prediction statistics per bucket; outcomes as a running total per model
# version and per bucket of the outcome's time (accuracy per window).
PREDICTIONS, OUTCOMES, OUTCOME_BUCKETS = "pred", "out", "outb"
# Chat models: feedback per bucket of its time too, so online accuracy counts its numerator and
# denominator over the same window (the running total ``fb`` covers the model's life).
FEEDBACK_BUCKETS = "fbb"
# A/B arms of a predictive model's experiment, from predictions and from outcomes.
AB_PREDICTIONS, AB_OUTCOMES = "abp", "abo"
# LLM-as-judge scores: per model and bucket of the judged turn's time, and per experiment arm.
JUDGE_BUCKETS, AB_JUDGE = "jdb", "abj"
ALL_VARIANTS = "*"
ARMS = (CONTROL, TREATMENT)


@runtime_checkable
class Mergeable(Protocol):
    """What every partial's state is: built empty, merged with another of its kind (associative,
    so any split of the events gives the same totals), and kept as JSON data."""

    def merge(self, other: Any) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


class Partial(TypedDict):
    """A stage-1 partial as written to the changelog and the partials topic (short keys: it is
    written once per touched slot per batch, so its size is throughput)."""

    k: str  # kind: turns, ab, fb, pred, out... (the state class)
    s: str  # subject: model version, model|* (its window), or experiment|arm
    g: str  # stage-2 group (Group as text: m:, p:, x:)
    b: int  # time bucket start, ms (0 for running totals)
    p: int  # source partition
    wm: int  # highest source offset folded in (the exactly-once watermark)
    st: dict[str, Any]  # the state, Mergeable.to_dict()


_STATE_CLASSES: dict[str, Any] = {
    TURNS: TurnStats,
    AB_TURNS: ArmTally,
    AB_FEEDBACK: ArmTally,
    FEEDBACK: FeedbackTally,
    FEEDBACK_BUCKETS: FeedbackTally,
    PREDICTIONS: PredictionStats,
    OUTCOMES: OutcomeTally,
    OUTCOME_BUCKETS: OutcomeTally,
    AB_PREDICTIONS: ArmTally,
    AB_OUTCOMES: ArmTally,
    JUDGE_BUCKETS: JudgeTally,
    AB_JUDGE: ArmTally,
}
# Stage-1 sources (one per input topic) and their windowed kind.
TURN, FEEDBACK_SOURCE, PREDICTION, OUTCOME = "turn", "feedback", "prediction", "outcome"
JUDGE = "judge"
WINDOWED_KIND = {TURN: TURNS, PREDICTION: PREDICTIONS, OUTCOME: OUTCOME_BUCKETS}
# Each source's time-bucketed kind (retention); feedback's and judge scores' buckets do not pace
# stage 1.
BUCKETED_KIND = {**WINDOWED_KIND, FEEDBACK_SOURCE: FEEDBACK_BUCKETS, JUDGE: JUDGE_BUCKETS}
# Kinds whose partials are time buckets (windows, retention); the others are running totals.
WINDOWED = tuple(BUCKETED_KIND.values())


@dataclass(frozen=True)
class Group:
    """What stage 2 evaluates together, and the key of its state: a chat model version (``m``:
    its turns and feedback), a predictive model version (``p``: predictions and outcomes) or an
    A/B experiment (``x``). Written ``kind:subject`` as a table key."""

    kind: str
    subject: str

    CHAT = "m"
    PREDICTIVE = "p"
    EXPERIMENT = "x"

    @classmethod
    def parse(cls, key: str) -> Group:
        kind, sep, subject = key.partition(":")
        if not sep or kind not in (cls.CHAT, cls.PREDICTIVE, cls.EXPERIMENT):
            raise ValueError(f"not a stage-2 group key: {key!r} (expected m:, p: or x:)")
        return cls(kind, subject)

    def __str__(self) -> str:
        return f"{self.kind}:{self.subject}"

    @property
    def is_model(self) -> bool:
        return self.kind in (self.CHAT, self.PREDICTIVE)

    @property
    def is_chat(self) -> bool:
        return self.kind == self.CHAT

    @property
    def is_experiment(self) -> bool:
        return self.kind == self.EXPERIMENT


def model_group(model_version: str) -> str:
    """The stage-2 group of a chat model version (its turns and feedback)."""
    return str(Group(Group.CHAT, model_version))


def prediction_group(model_version: str) -> str:
    """The stage-2 group of a predictive model version (its predictions and outcomes)."""
    return str(Group(Group.PREDICTIVE, model_version))


def window_kind(group: str) -> str:
    """The kind whose buckets make a model group's windows: predictions or turns."""
    return PREDICTIONS if Group.parse(group).kind == Group.PREDICTIVE else TURNS


def source_of(kind: str) -> str:
    """The stage-1 source whose partitions a partial of ``kind`` follows."""
    if kind in (TURNS, AB_TURNS):
        return TURN
    if kind in (PREDICTIONS, AB_PREDICTIONS):
        return PREDICTION
    if kind in (OUTCOMES, OUTCOME_BUCKETS, AB_OUTCOMES):
        return OUTCOME
    if kind in (JUDGE_BUCKETS, AB_JUDGE):
        return JUDGE
    return FEEDBACK_SOURCE


def experiment_group(experiment_id: str) -> str:
    return str(Group(Group.EXPERIMENT, experiment_id))


def slot_key(kind: str, subject: str, bucket: int, partition: int) -> str:
    return f"{kind}|{subject}|{bucket}|{partition}"


def state_of(partial: Mapping[str, Any]) -> Any:
    return _STATE_CLASSES[partial["k"]].from_dict(partial["st"])


def targets_of_turn(turn: Mapping[str, Any], hop_ms: int) -> list[tuple[str, str, str, int]]:
    """(kind, subject, group, bucket) that one chat turn contributes to."""
    model, variant = turn["model_version"], turn.get("variant")
    bucket = turn["event_time"] // hop_ms * hop_ms
    group = model_group(model)
    # The window is the model's, all variants together: the arms are compared in the
    # experiment's tallies, and a variant's share of a change is a segment of the window.
    out = [(TURNS, f"{model}|{ALL_VARIANTS}", group, bucket)]
    if variant and turn.get("experiment_id"):
        exp = turn["experiment_id"]
        out.append((AB_TURNS, f"{exp}|{variant}", experiment_group(exp), 0))
    return out


def targets_of_prediction(pred: Mapping[str, Any], hop_ms: int) -> list[tuple[str, str, str, int]]:
    """(kind, subject, group, bucket) that one prediction contributes to: its model version's
    window (all phases together), and its experiment's arm when it is part of one (phase
    ``control`` or ``treatment``)."""
    model, phase = pred["model_version"], pred.get("phase")
    bucket = pred["event_time"] // hop_ms * hop_ms
    group = prediction_group(model)
    out = [(PREDICTIONS, f"{model}|{ALL_VARIANTS}", group, bucket)]
    exp = pred.get("experiment_id")
    if phase and exp and phase in ARMS:
        out.append((AB_PREDICTIONS, f"{exp}|{phase}", experiment_group(exp), 0))
    return out


def targets_of_outcome(outcome: Mapping[str, Any], hop_ms: int) -> list[tuple[str, str, str, int]]:
    """An outcome counts for its model version (running total, and the bucket of its time) when
    the producer copied the version from the prediction; one without is counted by stage 1 as
    unattributed."""
    out = []
    exp, arm = outcome.get("experiment_id"), outcome.get("variant")
    if exp and arm in ARMS:
        out.append((AB_OUTCOMES, f"{exp}|{arm}", experiment_group(exp), 0))
    model = outcome.get("model_version")
    if not model:
        return out
    group = prediction_group(model)
    bucket = outcome["event_time"] // hop_ms * hop_ms
    return [(OUTCOMES, model, group, 0), (OUTCOME_BUCKETS, model, group, bucket), *out]


def targets_of_judge(score: Mapping[str, Any], hop_ms: int) -> list[tuple[str, str, str, int]]:
    """A judge score counts for its model in the bucket of the judged turn's time, and for the
    turn's experiment arm."""
    model = score["model_version"]
    bucket = score["event_time"] // hop_ms * hop_ms
    out = [(JUDGE_BUCKETS, model, model_group(model), bucket)]
    exp, arm = score.get("experiment_id"), score.get("variant")
    if exp and arm:
        out.append((AB_JUDGE, f"{exp}|{arm}", experiment_group(exp), 0))
    return out


def targets_of_feedback(
    fb: Mapping[str, Any], hop_ms: int | None = None
) -> list[tuple[str, str, str, int]]:
    out = []
    model = fb.get("model_version")
    if model:
        out.append((FEEDBACK, model, model_group(model), 0))
        if hop_ms:
            bucket = fb["event_time"] // hop_ms * hop_ms
            out.append((FEEDBACK_BUCKETS, model, model_group(model), bucket))
    if fb.get("experiment_id") and fb.get("variant"):
        exp = fb["experiment_id"]
        out.append((AB_FEEDBACK, f"{exp}|{fb['variant']}", experiment_group(exp), 0))
    return out


class Stage1Folder:
    """Fold one batch of (source, record, partition, offset) into partials; ``source`` is
    ``turn``, ``feedback``, ``prediction`` or ``outcome``.

    ``load(key)`` returns the stored partial (or None). The result maps every touched key to its
    new partial, including keys whose events were all skipped as replays: their snapshot is sent
    again so stage 2 hears of it even if the crash came between the table write and the send.

    With ``retention_ms`` the time buckets (turns, predictions, outcomes) of a source partition
    older than its newest bucket minus the retention are *closed*: their partials can be dropped
    (:meth:`expired`) and a late event for one is counted in ``late`` instead of folded (an
    outcome still counts in its model's running total), so a dropped partial is never restarted
    from zero (stage 2 would take the restart's smaller snapshot for the newer one).
    """

    def __init__(self, hop_ms: int, retention_ms: int | None = None) -> None:
        if hop_ms <= 0:
            raise ValueError(f"hop must be > 0 ms, got {hop_ms}")
        if retention_ms is not None and retention_ms < hop_ms:
            raise ValueError(f"retention ({retention_ms} ms) must be >= the hop ({hop_ms} ms)")
        self.hop_ms = hop_ms
        self.retention_ms = retention_ms
        # (windowed kind, source partition) -> newest bucket folded
        self.newest: dict[tuple[str, int], int] = {}
        self.skipped = 0
        self.folded = 0
        self.late = 0
        self.unattributed = 0  # outcomes without a model version

    def horizon(self, partition: int, kind: str = TURNS) -> int | None:
        """Buckets of ``kind`` in ``partition`` before this are closed (None: none closed yet)."""
        newest = self.newest.get((kind, partition))
        if self.retention_ms is None or newest is None:
            return None
        return newest - self.retention_ms

    def observe(self, partial: Mapping[str, Any]) -> None:
        """Learn the newest bucket from a restored partial."""
        if partial["k"] in WINDOWED:
            at = (partial["k"], partial["p"])
            if partial["b"] > self.newest.get(at, -1):
                self.newest[at] = partial["b"]

    def forget(self, partition: int, source: str = TURN) -> None:
        kind = BUCKETED_KIND.get(source)
        if kind is not None:
            self.newest.pop((kind, partition), None)

    def expired(self, partials: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
        """Keys of the windowed partials that lie wholly before their partition's horizon."""
        out = []
        for key, part in partials:
            if part["k"] not in WINDOWED:
                continue
            h = self.horizon(part["p"], part["k"])
            if h is not None and part["b"] < h:
                out.append(key)
        return out

    def _targets(self, source: str, rec: Mapping[str, Any]) -> list[tuple[str, str, str, int]]:
        if source == TURN:
            return targets_of_turn(rec, self.hop_ms)
        if source == PREDICTION:
            return targets_of_prediction(rec, self.hop_ms)
        if source == OUTCOME:
            targets = targets_of_outcome(rec, self.hop_ms)
            self.unattributed += not rec.get("model_version")
            return targets
        if source == JUDGE:
            return targets_of_judge(rec, self.hop_ms)
        return targets_of_feedback(rec, self.hop_ms)

    def fold(
        self,
        items: Iterable[tuple[str, Mapping[str, Any], int, int]],
        load: Callable[[str], Mapping[str, Any] | None],
    ) -> dict[str, dict[str, Any]]:
        partials: dict[str, dict[str, Any]] = {}
        states: dict[str, Any] = {}
        for source, rec, partition, offset in items:
            targets = self._targets(source, rec)
            closed = None
            windowed = BUCKETED_KIND.get(source)
            if windowed is not None and self.retention_ms is not None:
                at = (windowed, partition)
                newest = self.newest.get(at, -1)
                bucket = rec["event_time"] // self.hop_ms * self.hop_ms
                if bucket > newest:
                    self.newest[at] = bucket
                elif bucket < newest - self.retention_ms:
                    closed = windowed
                    self.late += 1
            for kind, subject, group, bucket in targets:
                if kind == closed:
                    continue
                key = slot_key(kind, subject, bucket, partition)
                part = partials.get(key)
                if part is None:
                    stored = load(key)
                    part = (
                        dict(stored)
                        if stored
                        else {
                            "k": kind,
                            "s": subject,
                            "g": group,
                            "b": bucket,
                            "p": partition,
                            "wm": -1,
                            "st": _STATE_CLASSES[kind]().to_dict(),
                        }
                    )
                    partials[key] = part
                if offset <= part["wm"]:
                    self.skipped += 1
                    continue
                st = states.get(key)
                if st is None:
                    st = states[key] = state_of(part)
                if kind in (AB_TURNS, AB_PREDICTIONS):
                    st.update_turn(rec)
                elif kind == AB_FEEDBACK:
                    st.update_feedback(rec)
                elif kind == AB_OUTCOMES:
                    st.update_outcome(rec)
                elif kind == AB_JUDGE:
                    st.update_judge(rec)
                else:
                    st.update(rec)
                part["wm"] = offset
                self.folded += 1
        for key, st in states.items():
            partials[key]["st"] = st.to_dict()
        return partials


def newer(stored: Mapping[str, Any] | None, incoming: Mapping[str, Any]) -> bool:
    """Stage 2 keeps a snapshot unless it already holds a newer one."""
    return stored is None or incoming["wm"] >= stored["wm"]


def merge_slots(
    partials: Iterable[Mapping[str, Any]],
    kind: str,
    subject: str,
    start: int | None = None,
    end: int | None = None,
) -> Any:
    """Merge the partials of one (kind, subject) whose bucket lies in [start, end)."""
    acc = _STATE_CLASSES[kind]()
    for p in partials:
        if p["k"] != kind or p["s"] != subject:
            continue
        if start is not None and p["b"] < start:
            continue
        if end is not None and p["b"] >= end:
            continue
        acc.merge(state_of(p))
    return acc
