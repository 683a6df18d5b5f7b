"""Names and partitioning shared by the two stages: stage 1's inputs, consumer group and partials
changelogs, and the partials-topic partition of a group key."""

from __future__ import annotations

import json
from dataclasses import dataclass

from continuum import kafka as clients
from continuum.topics import topic_spec
from streams.logic.partials import FEEDBACK_SOURCE, JUDGE, OUTCOME, PREDICTION, TURN
from streams.settings import StreamsSettings

SCHEMAS = {
    TURN: "ChatTurn",
    FEEDBACK_SOURCE: "Feedback",
    PREDICTION: "Prediction",
    OUTCOME: "Outcome",
    JUDGE: "JudgeScore",
}
# source -> input topic (see streams.logic.partials for the sources)
INPUTS = {
    TURN: "chat.turns",
    FEEDBACK_SOURCE: "chat.feedback",
    PREDICTION: "predictions",
    OUTCOME: "outcomes",
    JUDGE: "judge.scores",
}


@dataclass(frozen=True)
class Stage1Layout:
    """Stage 1's names: its consumer group, its input topic per source and the compacted
    changelog of each source's partials (partitioned like the input)."""

    group: str
    topics: dict[str, str]  # source -> input topic
    changelogs: dict[str, str]  # source -> partials changelog
    partitions: dict[str, int]  # source -> partitions of its input (and changelog)

    @classmethod
    def of(cls, settings: StreamsSettings) -> Stage1Layout:
        p, app_id = settings.topic_prefix, settings.app_id
        return cls(
            group=f"{p}{app_id}-fold",
            topics={src: topic_spec(t).full_name(p) for src, t in INPUTS.items()},
            changelogs={src: f"{p}{app_id}-{src}-partials-changelog" for src in INPUTS},
            partitions={src: topic_spec(t).partitions for src, t in INPUTS.items()},
        )

    @property
    def sources(self) -> dict[str, str]:
        """input topic -> source"""
        return {name: source for source, name in self.topics.items()}


def group_partition(group: str, partitions: int) -> int:
    """The partials-topic partition of a group key: Kafka's default (murmur2) partitioner on the
    key as Faust's JSON key serializer writes it, so stage 2's tables and views, which locate a
    group with Faust's own partitioner, find it where stage 1 sent it."""
    return clients.partition_for(json.dumps(group).encode(), partitions)
