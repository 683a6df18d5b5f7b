"""Every Kafka topic of Continuum, as data: one list the CLI creates and the services read."""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class TopicSpec:
    """A topic's contract: its record type, layout and retention.

    ``key_field`` names the event field used as the Kafka key, so all events of one session (or
    model version, experiment...) land on one partition in order.
    """

    name: str
    schema: str | None
    key_field: str | None
    partitions: int = 3
    cleanup_policy: str = "delete"
    retention_ms: int | None = 7 * DAY_MS
    doc: str = ""
    has_dlq: bool = True
    extra_config: dict[str, str] = field(default_factory=dict)

    def full_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"

    def dlq_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}{DLQ_SUFFIX}"

    def config(self) -> dict[str, str]:
        cfg = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        if "compact" in self.cleanup_policy:
            # Small segments and a low dirty ratio so superseded records are compacted promptly.
            cfg.setdefault("min.cleanable.dirty.ratio", "0.1")
            cfg.setdefault("segment.ms", str(3600 * 1000))
        cfg.update(self.extra_config)
        return cfg


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "chat.turns",
        "ChatTurn",
        "session_id",
        partitions=6,
        retention_ms=14 * DAY_MS,
        doc="Every chatbot turn, with latency, tokens, intent and confidence.",
    ),
    TopicSpec(
        "chat.feedback",
        "Feedback",
        "session_id",
        partitions=3,
        retention_ms=90 * DAY_MS,
        doc="User ratings, thumbs, categories and corrections.",
    ),
    TopicSpec(
        "predictions",
        "Prediction",
        "prediction_id",
        partitions=3,
        doc="Model-agnostic prediction log.",
    ),
    TopicSpec(
        "outcomes",
        "Outcome",
        "prediction_id",
        partitions=3,
        doc="Outcomes joined to predictions by prediction_id.",
    ),
    TopicSpec(
        "inference.requests",
        "InferenceRequest",
        "session_id",
        partitions=3,
        retention_ms=DAY_MS,
        doc="Chat-completion requests for the inference workers (the user lane).",
    ),
    TopicSpec(
        "inference.requests.background",
        "InferenceRequest",
        "session_id",
        partitions=3,
        retention_ms=DAY_MS,
        doc="Background requests (LLM-as-judge, evaluation runs): served only when no user "
        "request needs the engine, preempted by one.",
    ),
    TopicSpec(
        "inference.responses",
        "InferenceResponse",
        "request_id",
        partitions=3,
        retention_ms=DAY_MS,
        doc="Answers from the inference workers.",
    ),
    TopicSpec(
        "inference.responses.background",
        "InferenceResponse",
        "request_id",
        partitions=3,
        retention_ms=DAY_MS,
        doc="Answers to background requests whose caller reads them from Kafka (the judge).",
    ),
    TopicSpec(
        "inference.replies",
        "InferenceResponse",
        "request_id",
        partitions=3,
        retention_ms=60 * 60 * 1000,
        doc="Answers for the gateways waiting on them, written by the worker the moment an "
        "answer is ready, outside its transaction (inference.responses holds the exactly-once "
        "record): at least once, the gateway keeps the first per request id.",
        has_dlq=False,
    ),
    TopicSpec(
        "judge.scores",
        "JudgeScore",
        "session_id",
        partitions=3,
        retention_ms=90 * DAY_MS,
        doc="LLM-as-judge quality scores of sampled chat turns (one per turn).",
    ),
    TopicSpec(
        "inference.chunks",
        "InferenceChunk",
        "request_id",
        partitions=3,
        retention_ms=3_600_000,
        doc="Streamed answers' text while it is generated (the responses topic has the whole text).",
    ),
    TopicSpec(
        "inference.cancels",
        "InferenceCancel",
        "request_id",
        partitions=1,
        retention_ms=3_600_000,
        doc="Requests whose caller went away; every inference worker reads all of them.",
    ),
    TopicSpec(
        "inference.heartbeats",
        "WorkerHeartbeat",
        "worker_id",
        partitions=1,
        retention_ms=7 * DAY_MS,
        cleanup_policy="compact,delete",
        doc="Latest heartbeat per inference worker (compacted; old workers age out).",
    ),
    TopicSpec(
        "drift-signals",
        "DriftSignal",
        "model_version",
        partitions=1,
        retention_ms=30 * DAY_MS,
        doc="Drift measurements against baselines.",
    ),
    TopicSpec(
        "alerts",
        "Alert",
        "dedup_key",
        partitions=1,
        retention_ms=30 * DAY_MS,
        doc="Opened and resolved alerts.",
    ),
    TopicSpec(
        "alert-requests",
        "Alert",
        "dedup_key",
        partitions=6,
        retention_ms=7 * DAY_MS,
        doc="Requests to raise or resolve an alert (from detectors, services and operators), "
        "keyed by dedup key: the streams worker owning the key's partition decides.",
    ),
    TopicSpec(
        "thresholds",
        "Thresholds",
        "model_version",
        partitions=1,
        retention_ms=None,
        cleanup_policy="compact",
        doc="Per-model threshold overrides (compacted; the latest set per model is in force).",
    ),
    TopicSpec(
        "retrain-triggers",
        "RetrainTrigger",
        "model_version",
        partitions=1,
        retention_ms=None,
        cleanup_policy="compact",
        doc="One record per model version and reason that calls for retraining.",
    ),
    TopicSpec(
        "baselines",
        "Baseline",
        "model_version",
        partitions=1,
        retention_ms=None,
        cleanup_policy="compact",
        doc="Latest baseline per model version (compacted).",
    ),
    TopicSpec(
        "experiments",
        "Experiment",
        "experiment_id",
        partitions=1,
        retention_ms=None,
        cleanup_policy="compact",
        doc="Latest definition of each A/B experiment (compacted).",
    ),
    TopicSpec(
        "evaluations",
        "EvaluationResult",
        "model_version",
        partitions=1,
        retention_ms=None,
        doc="Offline evaluation runs (continuum evaluate), kept for good.",
    ),
    TopicSpec(
        "model-registry",
        "ModelVersion",
        "model_version",
        partitions=1,
        retention_ms=None,
        cleanup_policy="compact",
        doc="Latest registry state per model version (compacted).",
    ),
    TopicSpec(
        "schemas",
        None,
        None,
        partitions=1,
        retention_ms=None,
        cleanup_policy="compact",
        has_dlq=False,
        doc="Writer schemas by CRC-64-AVRO fingerprint (key: hex), JSON: how an older reader "
        "decodes a newer producer's records without a Schema Registry (compacted).",
    ),
)

_BY_NAME = {t.name: t for t in TOPICS}
# A record type's own topic is the first that carries it (alerts, not alert-requests).
_BY_SCHEMA: dict[str, TopicSpec] = {}
for _t in TOPICS:
    if _t.schema:
        _BY_SCHEMA.setdefault(_t.schema, _t)


def topic_spec(name: str) -> TopicSpec:
    """The spec of a topic by its unprefixed name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise KeyError(f"unknown topic {name!r}; known topics: {known}") from None


def topic_for_schema(schema: str) -> TopicSpec:
    """The topic that carries a record type (ChatTurn -> chat.turns)."""
    try:
        return _BY_SCHEMA[schema]
    except KeyError:
        known = ", ".join(sorted(_BY_SCHEMA))
        raise KeyError(f"no topic carries {schema!r}; known record types: {known}") from None


def dlq_specs() -> tuple[TopicSpec, ...]:
    """Dead-letter topics: raw bytes and the reason, kept 30 days, no schema."""
    return tuple(
        TopicSpec(
            t.name + DLQ_SUFFIX,
            None,
            None,
            partitions=1,
            retention_ms=30 * DAY_MS,
            doc=f"Records of {t.name} that could not be decoded or validated.",
            has_dlq=False,
        )
        for t in TOPICS
        if t.has_dlq
    )


def all_specs() -> tuple[TopicSpec, ...]:
    return TOPICS + dlq_specs()
