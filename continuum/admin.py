"""Create, list and describe Continuum's topics from the declarative list in ``continuum.topics``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource, NewTopic

from continuum import kafka as clients
from continuum.kafka import Connection
from continuum.retry import is_transient, with_retry
from continuum.settings import Settings
from continuum.topics import TopicSpec, all_specs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicState:
    name: str
    exists: bool
    partitions: int
    config: dict[str, str]


def replication_for(
    brokers: int, replication_factor: int = 0, min_insync: int = 0
) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers``: what is asked, or
    by default 3 and 2 on three or more brokers, 1 and 1 below. Asking for more replicas than
    there are brokers is an error naming both."""
    rf = replication_factor or (3 if brokers >= 3 else 1)
    if rf > brokers:
        raise ValueError(
            f"replication factor {rf} (CONTINUUM_REPLICATION_FACTOR) exceeds the {brokers} "
            "broker(s) of the cluster"
        )
    isr = min_insync or (2 if rf >= 3 else 1)
    if isr > rf:
        raise ValueError(
            f"min.insync.replicas {isr} (CONTINUUM_MIN_INSYNC_REPLICAS) exceeds the replication "
            f"factor {rf}"
        )
    return rf, isr


class TopicAdmin:
    def __init__(
        self,
        kafka: str | Connection | Settings,
        prefix: str = "",
        *,
        replication_factor: int = 0,
        min_insync_replicas: int = 0,
    ) -> None:
        self.admin = clients.admin(kafka)
        self.replication_factor = replication_factor
        self.min_insync_replicas = min_insync_replicas
        self.weaker: list[str] = []  # existing topics with fewer replicas than asked
        self.prefix = prefix

    def replication(self) -> tuple[int, int]:
        md = with_retry(lambda: self.admin.list_topics(timeout=10), "reading the cluster")
        return replication_for(len(md.brokers), self.replication_factor, self.min_insync_replicas)

    def create(
        self, specs: Iterable[TopicSpec] | None = None, timeout: float = 30.0
    ) -> dict[str, str]:
        """Create missing declared topics; returns name -> created | exists."""
        specs = list(specs if specs is not None else all_specs())
        return self.create_named(
            {s.full_name(self.prefix): (s.partitions, s.config()) for s in specs}, timeout
        )

    def create_named(
        self, topics: Mapping[str, tuple[int, Mapping[str, str]]], timeout: float = 30.0
    ) -> dict[str, str]:
        """Create missing topics (full name -> (partitions, config)) with the cluster's
        replication; returns name -> created | exists. A cluster still starting is waited out;
        any other error raises, naming the topics."""
        rf, isr = self.replication()
        new = [
            NewTopic(
                name,
                num_partitions=parts,
                replication_factor=rf,
                config={**config, "min.insync.replicas": str(isr)},
            )
            for name, (parts, config) in topics.items()
        ]
        result: dict[str, str] = {}

        def attempt() -> None:
            todo = [t for t in new if t.topic not in result]
            if not todo:
                return
            transient: KafkaException | None = None
            errors: list[str] = []
            for name, fut in self.admin.create_topics(todo, operation_timeout=timeout).items():
                try:
                    fut.result(timeout)
                    result[name] = "created"
                except KafkaException as exc:
                    err: KafkaError = exc.args[0]
                    if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                        result[name] = "exists"
                    elif is_transient(exc):
                        transient = exc  # a cluster still starting: the rest again
                    else:
                        errors.append(f"{name}: {err.str()}")
            if errors:
                raise RuntimeError("could not create topics: " + "; ".join(errors))
            if transient is not None:
                raise transient

        with_retry(attempt, "creating topics")
        self.weaker = self.check_replication([n for n, st in result.items() if st == "exists"], rf)
        return result

    def check_replication(self, names: Iterable[str], rf: int) -> list[str]:
        """Existing topics replicated fewer times than ``rf``, each named with its factor (a
        warning, not an error: increasing replication is a reassignment an operator runs)."""
        md = with_retry(lambda: self.admin.list_topics(timeout=10), "reading the cluster")
        weaker = []
        for name in names:
            topic = md.topics.get(name)
            if topic is None or not topic.partitions:
                continue
            have = min(len(p.replicas) for p in topic.partitions.values())
            if have < rf:
                weaker.append(f"{name} (replication {have} < {rf})")
        if weaker:
            log.warning(
                "%d topic(s) exist with fewer replicas than the cluster supports: %s; "
                "reassign their partitions (kafka-reassign-partitions) to reach %d",
                len(weaker),
                ", ".join(weaker[:10]),
                rf,
            )
        return weaker

    def list(self, timeout: float = 10.0) -> dict[str, int]:
        md = with_retry(lambda: self.admin.list_topics(timeout=timeout), "listing topics")
        return {
            name: len(t.partitions)
            for name, t in sorted(md.topics.items())
            if name.startswith(self.prefix) and not name.startswith("__")
        }

    def describe(
        self, specs: Iterable[TopicSpec] | None = None, timeout: float = 10.0
    ) -> list[TopicState]:
        specs = list(specs if specs is not None else all_specs())
        existing = self.list(timeout)
        out: list[TopicState] = []
        resources = [
            ConfigResource("topic", s.full_name(self.prefix))
            for s in specs
            if s.full_name(self.prefix) in existing
        ]
        configs: dict[str, dict[str, str]] = {}
        if resources:
            for res, fut in self.admin.describe_configs(resources).items():
                entries: dict[str, Any] = fut.result(timeout)
                configs[res.name] = {
                    k: v.value
                    for k, v in entries.items()
                    if k in ("cleanup.policy", "retention.ms", "min.cleanable.dirty.ratio")
                }
        for s in specs:
            name = s.full_name(self.prefix)
            out.append(
                TopicState(name, name in existing, existing.get(name, 0), configs.get(name, {}))
            )
        return out

    def delete(self, names: Iterable[str], timeout: float = 30.0) -> None:
        futs = self.admin.delete_topics(list(names), operation_timeout=timeout)
        for fut in futs.values():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
