"""Feedback tallies per model version: categories, ratings, thumbs, corrections, and how many new
examples arrived since the model version was trained."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import default_catalog
from streams.logic.abtest import is_satisfied


def _categories() -> tuple[str, ...]:
    """The 12 feedback categories, as the Feedback contract declares them."""
    field = next(
        f for f in default_catalog().current("Feedback").raw["fields"] if f["name"] == "category"
    )
    return tuple(field["type"]["symbols"])


CATEGORIES = _categories()


class FeedbackTally:
    def __init__(self) -> None:
        self.n = 0
        self.categories: dict[str, int] = {}
        self.ratings: dict[str, int] = {}
        self.thumbs_up = 0
        self.thumbs_down = 0
        self.corrections = 0
        self.satisfied = 0
        self.since_training = 0
        self.intents_negative: dict[str, int] = {}

    def update(self, fb: Mapping[str, Any], trained_at_ms: int | None = None) -> None:
        self.n += 1
        cat = fb.get("category") or "other"
        self.categories[cat] = self.categories.get(cat, 0) + 1
        if fb.get("rating") is not None:
            r = str(fb["rating"])
            self.ratings[r] = self.ratings.get(r, 0) + 1
        self.thumbs_up += fb.get("thumbs") == "UP"
        self.thumbs_down += fb.get("thumbs") == "DOWN"
        self.corrections += bool(fb.get("correction"))
        ok = is_satisfied(fb)
        self.satisfied += ok
        if not ok and fb.get("intent"):
            self.intents_negative[fb["intent"]] = self.intents_negative.get(fb["intent"], 0) + 1
        if trained_at_ms is None or fb.get("event_time", 0) >= trained_at_ms:
            self.since_training += 1

    def merge(self, other: FeedbackTally) -> FeedbackTally:
        self.n += other.n
        for mine, theirs in (
            (self.categories, other.categories),
            (self.ratings, other.ratings),
            (self.intents_negative, other.intents_negative),
        ):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        self.thumbs_up += other.thumbs_up
        self.thumbs_down += other.thumbs_down
        self.corrections += other.corrections
        self.satisfied += other.satisfied
        self.since_training += other.since_training
        return self

    def summary(self) -> dict[str, Any]:
        rated = sum(self.ratings.values())
        mean = sum(int(k) * v for k, v in self.ratings.items()) / rated if rated else None
        return {
            "feedback": self.n,
            "by_category": {c: self.categories.get(c, 0) for c in CATEGORIES},
            "by_rating": {str(r): self.ratings.get(str(r), 0) for r in range(1, 6)},
            "rating_mean": mean,
            "thumbs_up": self.thumbs_up,
            "thumbs_down": self.thumbs_down,
            "satisfaction_rate": self.satisfied / self.n if self.n else None,
            "corrections": self.corrections,
            "new_since_training": self.since_training,
            "worst_intents": sorted(self.intents_negative.items(), key=lambda kv: -kv[1])[:5],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "cat": self.categories,
            "rat": self.ratings,
            "up": self.thumbs_up,
            "down": self.thumbs_down,
            "cor": self.corrections,
            "sat": self.satisfied,
            "new": self.since_training,
            "neg": self.intents_negative,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeedbackTally:
        t = cls()
        t.n, t.thumbs_up, t.thumbs_down = int(d["n"]), int(d["up"]), int(d["down"])
        t.corrections, t.satisfied, t.since_training = int(d["cor"]), int(d["sat"]), int(d["new"])
        t.categories, t.ratings, t.intents_negative = dict(d["cat"]), dict(d["rat"]), dict(d["neg"])
        return t
