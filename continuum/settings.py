"""One settings object per service, read from the environment once at the entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _env_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false, yes/no), got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Runtime configuration shared by every Continuum service.

    Each field maps to the environment variable ``CONTINUUM_<FIELD>``; ``from_env`` reads them once
    and everything below the entry point receives explicit values.
    """

    bootstrap_servers: str = field(
        default="127.0.0.1:9092", metadata={"help": "Kafka bootstrap servers"}
    )
    schema_registry_url: str = field(
        default="",
        metadata={"help": "Schema Registry URL; empty means Avro single-object encoding"},
    )
    topic_prefix: str = field(
        default="", metadata={"help": "Prefix for every topic name (isolates tests and tenants)"}
    )
    home: Path = field(
        default=PROJECT_ROOT / ".continuum",
        metadata={"help": "Folder for local state: the embedded broker's data, caches, archives"},
    )
    kafka_port: int = field(default=9092, metadata={"help": "Port of the local broker"})
    kafka_controller_port: int = field(
        default=9093, metadata={"help": "Controller port of the local broker"}
    )
    kafka_heap: str = field(default="512m", metadata={"help": "Heap of the local broker JVM"})
    replication_factor: int = field(
        default=0,
        metadata={
            "help": "Replicas of every topic Continuum creates; 0 = what the cluster supports (3 "
            "on three or more brokers, else 1)"
        },
    )
    min_insync_replicas: int = field(
        default=0,
        metadata={"help": "min.insync.replicas of those topics; 0 = 2 with 3 replicas, else 1"},
    )
    api_token: str = field(
        default="", metadata={"help": "Bearer token for mutating web endpoints", "secret": True}
    )
    slack_webhook_url: str = field(
        default="", metadata={"help": "Slack incoming webhook URL", "secret": True}
    )
    webhook_url: str = field(
        default="", metadata={"help": "Generic JSON webhook URL for alerts", "secret": True}
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(cls.env_name(f.name))
            if raw is None:
                continue
            try:
                values[f.name] = cls._coerce(f.type, raw)
            except ValueError as exc:
                raise ValueError(f"{cls.env_name(f.name)}={raw!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @staticmethod
    def env_name(name: str) -> str:
        return f"CONTINUUM_{name.upper()}"

    @staticmethod
    def _coerce(kind: Any, raw: str) -> Any:
        kind = str(kind)
        if kind == "int":
            try:
                return int(raw)
            except ValueError:
                raise ValueError("expected an integer") from None
        if kind == "float":
            try:
                return float(raw)
            except ValueError:
                raise ValueError("expected a number") from None
        if kind == "bool":
            return _env_bool(raw)
        if kind == "Path":
            return Path(raw).expanduser()
        return raw

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked, safe to log or print."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    def __repr__(self) -> str:  # never leak secrets through logs or tracebacks
        inner = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({inner})"
