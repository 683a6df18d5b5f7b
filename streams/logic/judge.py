"""LLM-as-judge scores folded per model and time bucket (``JudgeTally``), and the judged-quality
signal: a window's mean judge score against the model's judge baseline (the scores of the turns
its baseline was frozen from), with the worst examples and the per-intent attribution attached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.logic.attribution import Contribution, decompose, explain
from streams.logic.running import RunningStats

JUDGED_QUALITY_DROP = "judged_quality_drop"  # as in streams.logic.drift
WORST_KEPT = 5


class JudgeTally:
    """Judge scores of a set of turns: counts by status, the score's running stats, per-intent
    sums, and the ``WORST_KEPT`` lowest-scored turns (a mergeable bottom-k: ties by turn id)."""

    def __init__(self) -> None:
        self.ok = 0
        self.unparseable = 0
        self.failed = 0
        self.pii = 0
        self.score = RunningStats()
        self.intents: dict[str, list[float]] = {}  # intent -> [n, sum]
        self.worst: list[list[Any]] = []  # [score, turn_id, intent, reason]

    def update(self, ev: Mapping[str, Any]) -> None:
        status = ev.get("status")
        self.pii += bool(ev.get("pii_in_answer"))
        if status != "ok" or ev.get("score") is None:
            if status == "unparseable":
                self.unparseable += 1
            else:
                self.failed += 1
            return
        score = float(ev["score"])
        self.ok += 1
        self.score.update(score)
        cell = self.intents.setdefault(str(ev.get("intent") or "(none)"), [0.0, 0.0])
        cell[0] += 1
        cell[1] += score
        self._keep(
            [[score, str(ev["turn_id"]), ev.get("intent"), str(ev.get("reason") or "")[:160]]]
        )

    def _keep(self, rows: list[list[Any]]) -> None:
        merged = {r[1]: r for r in [*self.worst, *rows]}
        self.worst = sorted(merged.values(), key=lambda r: (r[0], r[1]))[:WORST_KEPT]

    def merge(self, other: JudgeTally) -> JudgeTally:
        self.ok += other.ok
        self.unparseable += other.unparseable
        self.failed += other.failed
        self.pii += other.pii
        self.score.merge(other.score)
        for k, (n, s) in other.intents.items():
            cell = self.intents.setdefault(k, [0.0, 0.0])
            cell[0] += n
            cell[1] += s
        self._keep([list(r) for r in other.worst])
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "unp": self.unparseable,
            "fail": self.failed,
            "pii": self.pii,
            "sc": self.score.to_dict(),
            "int": self.intents,
            "worst": self.worst,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JudgeTally:
        t = cls()
        t.ok, t.unparseable, t.failed = int(d["ok"]), int(d["unp"]), int(d["fail"])
        t.pii = int(d.get("pii", 0))
        t.score = RunningStats.from_dict(d["sc"])
        t.intents = {k: [float(n), float(s)] for k, (n, s) in d["int"].items()}
        t.worst = [list(r) for r in d.get("worst", [])]
        return t

    def segments(self) -> dict[str, dict[str, float]]:
        """Per intent: its share of the judged turns and mean score (attribution's shape)."""
        total = sum(n for n, _ in self.intents.values())
        return {
            f"intent={k}": {"n": n, "share": n / total if total else 0.0, "judge_mean": s / n}
            for k, (n, s) in sorted(self.intents.items())
            if n
        }

    def summary(self) -> dict[str, Any]:
        judged = self.ok + self.unparseable + self.failed
        return {
            "judged": judged,
            "scored": self.ok,
            "unparseable": self.unparseable,
            "failed": self.failed,
            "unparseable_rate": self.unparseable / judged if judged else None,
            "pii_in_answer": self.pii,
            "score_mean": self.score.mean if self.score.n else None,
            "score_std": self.score.std if self.score.n > 1 else None,
            "segments": self.segments(),
            "worst": [
                {"score": r[0], "turn_id": r[1], "intent": r[2], "reason": r[3]} for r in self.worst
            ],
        }


def judged_quality(
    window: JudgeTally,
    baseline: Mapping[str, Any] | None,
    drop: float,
    min_samples: int,
) -> tuple[float, float, float, bool, dict[str, str]] | None:
    """(value, baseline, relative change, breached, details) of the window's mean judge score
    against the judge baseline (a :meth:`JudgeTally.summary`), or None when either has fewer than
    ``min_samples`` scores. Details: the worst three turns and where the drop comes from."""
    if baseline is None or (baseline.get("scored") or 0) < min_samples:
        return None
    if window.ok < min_samples or not baseline.get("score_mean"):
        return None
    now, base = window.score.mean, float(baseline["score_mean"])
    change = (now - base) / base
    breached = -change >= drop - 1e-9
    details: dict[str, str] = {"judged": str(window.ok), "min_samples": str(min_samples)}
    for i, r in enumerate(window.worst[:3]):
        details[f"worst.{i + 1}"] = f"{r[0]:.2f} {r[2] or '-'} turn {r[1]}: {r[3]}"
    if breached:
        rows: list[Contribution] = decompose(
            window.segments(), baseline.get("segments") or {}, "judge_mean", "n", base
        )
        details.update(explain(JUDGED_QUALITY_DROP, [c for c in rows if c.dimension == "intent"]))
    return now, base, change, breached, details
