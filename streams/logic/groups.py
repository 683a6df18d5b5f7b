"""Stage 2's decisions per group, pure: when a model group is evaluated, what one evaluation
sends, keeps and forgets, and the index of a group's partials.

The agent (streams.stage2) only reads its tables, asks :func:`should_evaluate`, applies the
:class:`ModelStep` that :func:`model_step` returns, and writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.logic.evaluation import EvalConfig, evaluate_model
from streams.logic.partials import ALL_VARIANTS, WINDOWED, Group, slot_key, window_kind

# Decisions of a group's last evaluations kept in its state: re-sent the first time a process
# touches the group, so a crash between an evaluation's state write and its sends (the
# uncommitted span, redelivered) loses none (same ids: the alert owner and every reader
# de-duplicate). Retrain triggers fire once and raise requests may be a window's only breach;
# resolve requests are not kept: every later window within its threshold sends one again.
OUTBOX = 48

# (schema, event, topic): topic None is the schema's own topic
Send = tuple[str, dict[str, Any], str | None]


def should_evaluate(
    state: Mapping[str, Any], partial: Mapping[str, Any], baseline_known: bool
) -> bool:
    """Whether a new partial of a model group (``m:``/``p:``) calls for an evaluation.

    A windowed partial (all variants) evaluates when its bucket is newer than the last
    evaluated window end, when the group was never evaluated, or, until a baseline exists,
    always: a late bucket (a partition behind the others) may complete the turns to freeze.
    Any other partial (feedback, outcomes, a window partial of another subject) re-evaluates a group
    that was evaluated before, so feedback counts and retrain criteria stay current."""
    windowed = window_kind(partial["g"])
    if partial["k"] == windowed:
        if not partial["s"].endswith(f"|{ALL_VARIANTS}"):
            return False
        unfrozen = "frozen_baseline" not in state and not baseline_known
        return (
            partial["b"] > state.get("evaluated_end", -1) or "first_seen" not in state or unfrozen
        )
    return "first_seen" in state


@dataclass
class ModelStep:
    """What one evaluation of a model group does: the group's new state, the events to send
    (in order) and the partials (slot keys) no window or baseline will read again."""

    state: dict[str, Any]
    sends: list[Send] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)


def model_step(
    group: str,
    partials: list[Mapping[str, Any]],
    state: Mapping[str, Any],
    cfg: EvalConfig,
    *,
    live_baseline: Mapping[str, Any] | None = None,
    evaluation_accuracy: float | None = None,
    trained_at_ms: int | None = None,
    training: Mapping[str, Any] | None = None,
) -> ModelStep:
    """Evaluate a chat model (group ``m:``) or a predictive model (``p:``) on its partials:
    the published baseline (``live_baseline``) or the one this group froze, the decisions kept
    in the outbox, the newest window's summary, and the buckets to forget. ``training``: the
    version's registered training metrics, compared with every window of a predictive model."""
    g = Group.parse(group)
    model = g.subject
    out = evaluate_model(
        model,
        list(partials),
        live_baseline or state.get("frozen_baseline"),
        state,
        cfg,
        evaluation_accuracy=evaluation_accuracy,
        trained_at_ms=trained_at_ms,
        kind=window_kind(group),
        training=training,
    )
    new_state: dict[str, Any] = out["state"]
    step = ModelStep(new_state)
    if out["baseline"] is not None:
        new_state["frozen_baseline"] = out["baseline"]
        step.sends.append(("Baseline", out["baseline"], None))
    step.sends += [("DriftSignal", sig, None) for sig in out["signals"]]
    step.sends += [("Alert", req, "alert-requests") for req in out["alerts"]]
    step.sends += [("RetrainTrigger", trig, None) for trig in out["triggers"]]
    decided = [("Alert", r) for r in out["alerts"] if r["status"] == "OPEN"]
    decided += [("RetrainTrigger", t) for t in out["triggers"]]
    if decided:
        new_state["outbox"] = [*state.get("outbox", []), *decided][-OUTBOX:]
    if out["summary"] is not None:
        new_state["last_window"] = out["summary"]
    if g.is_chat:
        new_state["feedback"] = out.get("feedback")
    else:
        new_state["outcomes"] = out.get("outcomes")
    # Forget buckets that no window or baseline will read again (only once a baseline exists:
    # until then every bucket may be part of the one to freeze).
    if new_state.get("frozen_baseline") or live_baseline:
        horizon = new_state.get("evaluated_end", 0) - cfg.retention_ms
        step.forget = [
            slot_key(p["k"], p["s"], p["b"], p["p"])
            for p in partials
            if p["k"] in WINDOWED and p["b"] < horizon
        ]
    return step


def outbox_sends(state: Mapping[str, Any]) -> list[Send]:
    """The kept decisions of a group, to send again (alert requests marked ``replayed``)."""
    out: list[Send] = []
    for schema, event in state.get("outbox", []):
        if schema == "Alert":
            replayed = {**event, "details": {**event["details"], "replayed": "1"}}
            out.append(("Alert", replayed, "alert-requests"))
        else:
            out.append((schema, event, None))
    return out


def inputs_of(partials: Iterable[Mapping[str, Any]]) -> list[int]:
    """What an evaluation saw: how many partials and the sum of their offset watermarks."""
    parts = list(partials)
    return [len(parts), sum(int(p["wm"]) for p in parts)]


class GroupIndex:
    """Slot keys by group, so an evaluation reads its group's partials without scanning every
    group's. Kept in step with the table by whoever writes it; :meth:`rebuild` after the table
    changed under it (a rebalance restored or dropped partitions)."""

    def __init__(self) -> None:
        self._keys: dict[str, set[str]] = {}
        self._group_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._group_of)

    def add(self, key: str, group: str) -> None:
        old = self._group_of.get(key)
        if old == group:
            return
        if old is not None:
            self.discard(key)
        self._group_of[key] = group
        self._keys.setdefault(group, set()).add(key)

    def discard(self, key: str) -> None:
        group = self._group_of.pop(key, None)
        if group is None:
            return
        keys = self._keys[group]
        keys.discard(key)
        if not keys:
            del self._keys[group]

    def keys(self, group: str) -> list[str]:
        return sorted(self._keys.get(group, ()))

    def groups(self) -> list[str]:
        return sorted(self._keys)

    def rebuild(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        self._keys.clear()
        self._group_of.clear()
        for key, part in items:
            self.add(key, part["g"])
