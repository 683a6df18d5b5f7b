"""When to retrain a model version: the chatbot seed's criteria (new feedback >= 50, model age >=
30 days, accuracy < 70 %), evaluated online. Each (model version, reason) fires once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DAY_MS = 86_400_000


@dataclass(frozen=True)
class RetrainPolicy:
    min_new_feedback: int = 50
    max_age_days: float = 30.0
    min_accuracy: float = 0.70
    min_judged_for_accuracy: int = 200  # online accuracy is noise on fewer judged events

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def online_accuracy(judged: int, wrong: int) -> float | None:
    """Share of judged events (feedback, or outcomes) not judged wrong, both counted over the same
    period."""
    return None if judged == 0 else 1.0 - min(wrong, judged) / judged


def due_triggers(
    *,
    model_version: str,
    now_ms: int,
    trained_at_ms: int | None,
    new_feedback: int,
    turns: int,
    wrong_intent_feedback: int,  # judged events and those judged wrong, over the same period
    evaluation_accuracy: float | None = None,
    already_fired: set[str] | frozenset[str] = frozenset(),
    policy: RetrainPolicy = RetrainPolicy(),
) -> list[dict[str, Any]]:
    """RetrainTrigger events (without event_id/time) for criteria met and not fired before.
    A published evaluation result takes precedence over the online accuracy estimate."""
    out: list[dict[str, Any]] = []

    def fire(reason: str, value: float, threshold: float, **details: str) -> None:
        trigger_id = f"{model_version}:{reason}"
        if trigger_id in already_fired:
            return
        out.append(
            {
                "trigger_id": trigger_id,
                "model_version": model_version,
                "reason": reason,
                "value": float(value),
                "threshold": float(threshold),
                "details": details,
            }
        )

    if new_feedback >= policy.min_new_feedback:
        fire("FEEDBACK_COUNT", new_feedback, policy.min_new_feedback)
    if trained_at_ms is not None:
        age = (now_ms - trained_at_ms) / DAY_MS
        if age >= policy.max_age_days:
            fire("MODEL_AGE", age, policy.max_age_days)
    if evaluation_accuracy is not None:
        if evaluation_accuracy < policy.min_accuracy:
            fire("LOW_ACCURACY", evaluation_accuracy, policy.min_accuracy, source="evaluation")
    elif turns >= policy.min_judged_for_accuracy:
        acc = online_accuracy(turns, wrong_intent_feedback)
        if acc is not None and acc < policy.min_accuracy:
            fire(
                "LOW_ACCURACY",
                acc,
                policy.min_accuracy,
                source="online",
                judged=str(turns),
                wrong=str(wrong_intent_feedback),
            )
    return out
