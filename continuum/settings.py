"""One settings object per service, read from the environment once at the entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from continuum.secrets import sensitive

if TYPE_CHECKING:
    from continuum.kafka import Connection

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _env_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false, yes/no), got {raw!r}")


PASSTHROUGH = "CONTINUUM_LIBRDKAFKA_"


def passthrough(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """librdkafka properties from ``CONTINUUM_LIBRDKAFKA_<PROPERTY>`` (``_`` for ``.``)."""
    return tuple(
        sorted(
            (name[len(PASSTHROUGH) :].lower().replace("_", "."), value)
            for name, value in env.items()
            if name.startswith(PASSTHROUGH) and len(name) > len(PASSTHROUGH)
        )
    )


def _secret_file(env: Mapping[str, str], name: str) -> str | None:
    """A secret from the file named by ``<NAME>_FILE`` (the Docker / Kubernetes secrets
    convention), without its trailing newline."""
    path = env.get(name + "_FILE")
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text().rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"{name}_FILE={path}: cannot read it ({exc.strerror})") from None


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
    # -- Kafka security (one connection for every client: continuum.kafka.Connection) -------
    kafka_security_protocol: str = field(
        default="PLAINTEXT",
        metadata={"help": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"},
    )
    kafka_sasl_mechanism: str = field(
        default="",
        metadata={"help": "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (with SASL_*)"},
    )
    kafka_sasl_username: str = field(default="", metadata={"help": "SASL user name"})
    kafka_sasl_password: str = field(
        default="", metadata={"help": "SASL password (or *_FILE)", "secret": True}
    )
    kafka_ssl_ca_location: str = field(
        default="", metadata={"help": "CA certificate (PEM) that signed the brokers' certificates"}
    )
    kafka_ssl_certificate_location: str = field(
        default="", metadata={"help": "client certificate (PEM) for mutual TLS"}
    )
    kafka_ssl_key_location: str = field(
        default="", metadata={"help": "client private key (PEM) for mutual TLS"}
    )
    kafka_ssl_key_password: str = field(
        default="", metadata={"help": "password of the client key (or *_FILE)", "secret": True}
    )
    kafka_ssl_check_hostname: bool = field(
        default=True, metadata={"help": "verify that the broker certificate names the host"}
    )
    kafka_oauth_token_url: str = field(
        default="", metadata={"help": "OAUTHBEARER: the OIDC token endpoint"}
    )
    kafka_oauth_client_id: str = field(default="", metadata={"help": "OAUTHBEARER: client id"})
    kafka_oauth_client_secret: str = field(
        default="", metadata={"help": "OAUTHBEARER: client secret (or *_FILE)", "secret": True}
    )
    kafka_oauth_scope: str = field(default="", metadata={"help": "OAUTHBEARER: scope"})
    librdkafka: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata={
            "help": "other librdkafka properties, from CONTINUUM_LIBRDKAFKA_<PROPERTY> "
            "(dots as underscores)",
            "flag": False,
        },
    )
    secret_files: tuple[tuple[str, str], ...] = field(
        default=(), metadata={"help": "secrets read from *_FILE (field, path)", "flag": False}
    )
    # -- Schema Registry credentials --------------------------------------------------------
    schema_registry_username: str = field(
        default="", metadata={"help": "Schema Registry basic-auth user (API key)"}
    )
    schema_registry_password: str = field(
        default="",
        metadata={"help": "Schema Registry basic-auth password (or *_FILE)", "secret": True},
    )
    schema_registry_token: str = field(
        default="", metadata={"help": "Schema Registry bearer token (or *_FILE)", "secret": True}
    )
    schema_registry_logical_cluster: str = field(
        default="",
        metadata={"help": "Schema Registry logical cluster (Confluent Cloud, with a token)"},
    )
    schema_registry_ca_location: str = field(
        default="", metadata={"help": "CA certificate (PEM) of the Schema Registry's TLS"}
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
    # -- personal data in user text (producers.pii), applied by every EventProducer -----------
    pii_redaction: str = field(
        default="redact",
        metadata={
            "help": "What the SDK does with personal data (e-mail, phone, cédula, card, plate) in "
            "user and bot text before it reaches Kafka: off, redact or reject"
        },
    )
    pii_fields: str = field(
        default="",
        metadata={
            "help": "Per-field overrides, e.g. ChatTurn.bot_response=off,Feedback.comment=reject"
        },
    )
    pii_hash_key: str = field(
        default="",
        metadata={
            "help": "Key of the hash in redacted placeholders (<PHONE:1f3a9c2e>) so a value still "
            "joins across events; empty: type-only placeholders",
            "secret": True,
        },
    )
    # -- online LLM-as-judge (continuum judge) -----------------------------------------------
    judge_sample_rate: float = field(
        default=0.05,
        metadata={"help": "Share of chat turns the LLM judge scores (a hash of the turn id)"},
    )
    judge_tokens_per_minute: float = field(
        default=20_000.0,
        metadata={"help": "Judge tokens (prompt + answer) per model version per minute; 0: no cap"},
    )
    judge_max_tokens: int = field(default=160, metadata={"help": "Longest judge answer, tokens"})
    judge_timeout_s: float = field(
        default=300.0,
        metadata={"help": "Deadline of a judge request on the background lane, seconds"},
    )
    judge_model: str = field(
        default="",
        metadata={"help": "Model version that judges (empty: whichever worker answers the lane)"},
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        from_files: list[tuple[str, str]] = []
        for f in fields(cls):
            if f.name == "librdkafka":
                values[f.name] = passthrough(env)
                continue
            if f.name == "secret_files":
                continue
            raw = env.get(cls.env_name(f.name))
            if raw is None and f.metadata.get("secret"):
                raw = _secret_file(env, cls.env_name(f.name))
                if raw is not None:
                    from_files.append((f.name, env[cls.env_name(f.name) + "_FILE"]))
            if raw is None:
                continue
            try:
                values[f.name] = cls._coerce(f.type, raw)
            except ValueError as exc:
                raise ValueError(f"{cls.env_name(f.name)}={raw!r}: {exc}") from None
        values["secret_files"] = tuple(from_files)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def secret_file(self, name: str) -> Path | None:
        """The file a secret setting was read from (``*_FILE``), for services that re-read it
        when it is rotated."""
        for field_name, path in self.secret_files:
            if field_name == name:
                return Path(path).expanduser()
        return None

    @property
    def registry_conf(self) -> dict[str, Any]:
        """confluent-kafka ``SchemaRegistryClient`` properties for the credentials and TLS."""
        conf: dict[str, Any] = {}
        if self.schema_registry_username or self.schema_registry_password:
            if self.schema_registry_token:
                raise ValueError(
                    "Schema Registry: set basic auth (CONTINUUM_SCHEMA_REGISTRY_USERNAME/_PASSWORD) "
                    "or a bearer token (CONTINUUM_SCHEMA_REGISTRY_TOKEN), not both"
                )
            if ":" in self.schema_registry_username:
                raise ValueError("CONTINUUM_SCHEMA_REGISTRY_USERNAME must not contain ':'")
            conf["basic.auth.user.info"] = (
                f"{self.schema_registry_username}:{self.schema_registry_password}"
            )
        elif self.schema_registry_token:
            conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
            conf["bearer.auth.token"] = self.schema_registry_token
            conf["bearer.auth.logical.cluster"] = self.schema_registry_logical_cluster
        if self.schema_registry_ca_location:
            if not Path(self.schema_registry_ca_location).is_file():
                raise ValueError(
                    f"CONTINUUM_SCHEMA_REGISTRY_CA_LOCATION={self.schema_registry_ca_location}: "
                    "no such file"
                )
            conf["ssl.ca.location"] = self.schema_registry_ca_location
        return conf

    @property
    def kafka(self) -> Connection:
        """The Kafka connection every client of this service uses (checked when built)."""
        from continuum.kafka import Connection

        return Connection.from_settings(self)

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
            elif f.name == "librdkafka":
                value = [(k, "***" if sensitive(k) else v) for k, v in value]
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    def __repr__(self) -> str:  # never leak secrets through logs or tracebacks
        inner = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({inner})"
