"""Create, list and describe Continuum's topics from the declarative list in ``continuum.topics``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from continuum.logthrottle import quiet_client
from continuum.retry import is_transient, with_retry
from continuum.topics import TopicSpec, all_specs


@dataclass(frozen=True)
class TopicState:
    name: str
    exists: bool
    partitions: int
    config: dict[str, str]


class TopicAdmin:
    def __init__(self, bootstrap_servers: str, prefix: str = "") -> None:
        self.admin = AdminClient({"bootstrap.servers": bootstrap_servers, **quiet_client()})
        self.prefix = prefix

    def create(
        self, specs: Iterable[TopicSpec] | None = None, timeout: float = 30.0
    ) -> dict[str, str]:
        """Create missing topics; returns name -> created | exists. Raises on any other error."""
        specs = list(specs if specs is not None else all_specs())
        new = [
            NewTopic(
                s.full_name(self.prefix),
                num_partitions=s.partitions,
                replication_factor=1,
                config=s.config(),
            )
            for s in specs
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
        return result

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
