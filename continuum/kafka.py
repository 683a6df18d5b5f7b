"""How every Continuum client connects to Kafka: one :class:`Connection`, built once from
:class:`~continuum.settings.Settings`, translated for each client library.

- confluent-kafka (the SDK producer, every consumer, the admin client): :meth:`Connection.librdkafka`
  gives the ``bootstrap.servers`` / ``security.protocol`` / ``sasl.*`` / ``ssl.*`` properties plus
  any pass-through property (``CONTINUUM_LIBRDKAFKA_<PROPERTY>``);
- aiokafka, under Faust (stage 2): :meth:`Connection.ssl_context` and, in ``streams.app``, the
  matching Faust credentials.

Secrets (SASL password, key password, OAuth client secret) never appear in ``repr``, logs or
error messages; ``redacted()`` is what may be printed.

The client factories below (:func:`consumer`, :func:`producer`, :func:`admin`) are the only
places in the services that build a confluent-kafka client, so a security setting reaches all
of them.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from continuum.retry import with_retry
from continuum.secrets import sensitive

if TYPE_CHECKING:
    from continuum.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
# Properties a pass-through must not override: they are Continuum's named settings.
NAMED = frozenset(
    {
        "bootstrap.servers",
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
    }
)


class ConnectionError(ValueError):  # noqa: A001 - a settings error, named for what it is about
    """The Kafka connection settings are inconsistent; the message says which one to fix."""


@dataclass(frozen=True)
class Connection:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_ca_location: str = ""
    ssl_certificate_location: str = ""
    ssl_key_location: str = ""
    ssl_key_password: str = field(default="", repr=False)
    ssl_check_hostname: bool = True
    oauth_token_url: str = ""
    oauth_client_id: str = ""
    oauth_client_secret: str = field(default="", repr=False)
    oauth_scope: str = ""
    # librdkafka properties passed through as they are (name, value), e.g. from
    # CONTINUUM_LIBRDKAFKA_SOCKET_KEEPALIVE_ENABLE=true.
    extra: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    SECRETS = ("sasl_password", "ssl_key_password", "oauth_client_secret")

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def of(cls, source: str | Connection | Settings) -> Connection:
        """A connection from a bootstrap string (plaintext, for tests and tools), a connection,
        or settings (what services use)."""
        if isinstance(source, Connection):
            return source
        if isinstance(source, str):
            return cls(source)
        return source.kafka

    @classmethod
    def from_settings(cls, settings: Settings) -> Connection:
        conn = cls(
            bootstrap_servers=settings.bootstrap_servers,
            security_protocol=settings.kafka_security_protocol.upper(),
            sasl_mechanism=settings.kafka_sasl_mechanism.upper(),
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
            ssl_ca_location=str(settings.kafka_ssl_ca_location or ""),
            ssl_certificate_location=str(settings.kafka_ssl_certificate_location or ""),
            ssl_key_location=str(settings.kafka_ssl_key_location or ""),
            ssl_key_password=settings.kafka_ssl_key_password,
            ssl_check_hostname=settings.kafka_ssl_check_hostname,
            oauth_token_url=settings.kafka_oauth_token_url,
            oauth_client_id=settings.kafka_oauth_client_id,
            oauth_client_secret=settings.kafka_oauth_client_secret,
            oauth_scope=settings.kafka_oauth_scope,
            extra=settings.librdkafka,
        )
        conn.validate()
        return conn

    def validate(self) -> None:
        """Raise :class:`ConnectionError` naming the setting to fix."""
        p = self.security_protocol
        if p not in PROTOCOLS:
            raise ConnectionError(
                f"CONTINUUM_KAFKA_SECURITY_PROTOCOL={p!r}: expected one of {', '.join(PROTOCOLS)}"
            )
        if self.sasl:
            m = self.sasl_mechanism
            if m not in MECHANISMS:
                raise ConnectionError(
                    f"CONTINUUM_KAFKA_SASL_MECHANISM={m!r}: {p} needs one of "
                    f"{', '.join(MECHANISMS)}"
                )
            if m == "OAUTHBEARER":
                for name in ("oauth_token_url", "oauth_client_id", "oauth_client_secret"):
                    if not getattr(self, name):
                        raise ConnectionError(
                            f"SASL OAUTHBEARER needs CONTINUUM_KAFKA_{name.upper()} "
                            "(OIDC client credentials)"
                        )
            elif not (self.sasl_username and self.sasl_password):
                raise ConnectionError(
                    f"SASL {m} needs CONTINUUM_KAFKA_SASL_USERNAME and "
                    "CONTINUUM_KAFKA_SASL_PASSWORD (or CONTINUUM_KAFKA_SASL_PASSWORD_FILE)"
                )
        elif self.sasl_mechanism:
            raise ConnectionError(
                f"CONTINUUM_KAFKA_SASL_MECHANISM is set but the protocol is {p}: "
                "set CONTINUUM_KAFKA_SECURITY_PROTOCOL to SASL_SSL (or SASL_PLAINTEXT)"
            )
        for name in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            path = getattr(self, name)
            if path and not self.tls:
                raise ConnectionError(
                    f"CONTINUUM_KAFKA_{name.upper()} is set but the protocol is {p}: "
                    "TLS files are used only with SSL or SASL_SSL"
                )
            if path and not Path(path).is_file():
                raise ConnectionError(f"CONTINUUM_KAFKA_{name.upper()}={path}: no such file")
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise ConnectionError(
                "mutual TLS needs both CONTINUUM_KAFKA_SSL_CERTIFICATE_LOCATION and "
                "CONTINUUM_KAFKA_SSL_KEY_LOCATION"
            )
        for name, _ in self.extra:
            if name in NAMED:
                raise ConnectionError(
                    f"CONTINUUM_LIBRDKAFKA_{name.upper().replace('.', '_')} would override "
                    f"{name}, which is a named setting; use its CONTINUUM_ variable instead"
                )

    # -- facts --------------------------------------------------------------------------------

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def redacted(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.SECRETS and value:
                value = "***"
            elif f.name == "extra":
                value = [(k, "***" if sensitive(k) else v) for k, v in value]
            out[f.name] = value
        return out

    # -- confluent-kafka ----------------------------------------------------------------------

    def librdkafka(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.sasl:
            conf["sasl.mechanism"] = self.sasl_mechanism
            if self.sasl_mechanism == "OAUTHBEARER":
                conf["sasl.oauthbearer.method"] = "oidc"
                conf["sasl.oauthbearer.token.endpoint.url"] = self.oauth_token_url
                conf["sasl.oauthbearer.client.id"] = self.oauth_client_id
                conf["sasl.oauthbearer.client.secret"] = self.oauth_client_secret
                if self.oauth_scope:
                    conf["sasl.oauthbearer.scope"] = self.oauth_scope
            else:
                conf["sasl.username"] = self.sasl_username
                conf["sasl.password"] = self.sasl_password
        if self.tls:
            if self.ssl_ca_location:
                conf["ssl.ca.location"] = self.ssl_ca_location
            if self.ssl_certificate_location:
                conf["ssl.certificate.location"] = self.ssl_certificate_location
                conf["ssl.key.location"] = self.ssl_key_location
                if self.ssl_key_password:
                    conf["ssl.key.password"] = self.ssl_key_password
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        conf.update(dict(self.extra))
        return conf

    # -- aiokafka (Faust) ---------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for aiokafka, from the same files librdkafka uses."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.ssl_ca_location or None)
        ctx.check_hostname = self.ssl_check_hostname
        if self.ssl_certificate_location:
            ctx.load_cert_chain(
                self.ssl_certificate_location,
                self.ssl_key_location,
                password=self.ssl_key_password or None,
            )
        return ctx


# -- client factories ---------------------------------------------------------------------------


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's ``Utils.murmur2``), as a signed 32-bit int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length % 4
    rest = data[length - tail :]
    if tail == 3:
        h ^= rest[2] << 16
    if tail >= 2:
        h ^= rest[1] << 8
    if tail >= 1:
        h ^= rest[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java client, librdkafka's
    ``murmur2_random``, aiokafka, Faust) gives a keyed record: murmur2 of the key bytes, positive,
    modulo the partition count."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def client_config(
    source: str | Connection | Settings, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The connection's properties plus the caller's (group, offsets, timeouts); the quiet
    logging of :mod:`continuum.logthrottle` unless the caller sets its own ``error_cb``."""
    from continuum.logthrottle import quiet_client

    conf = {**quiet_client(), **Connection.of(source).librdkafka()}
    conf.update(overrides or {})
    return conf


def consumer(
    source: str | Connection | Settings,
    group_id: str,
    conf: Mapping[str, Any] | None = None,
    *,
    offset_reset: str = "earliest",
) -> Consumer:
    """A consumer that commits only when told (``enable.auto.commit`` false); ``conf`` adds or
    overrides librdkafka properties (timeouts, ``enable.partition.eof``...)."""
    base = {"group.id": group_id, "enable.auto.commit": False, "auto.offset.reset": offset_reset}
    return Consumer(client_config(source, {**base, **(conf or {})}))


def preflight(source: str | Connection | Settings, timeout_s: float = 20.0) -> bool:
    """Fail fast when Kafka refuses this service's credentials or TLS: one
    :class:`ConnectionError` naming the setting to fix, instead of a client that retries and logs
    forever. An unreachable cluster is not an error here (services wait it out): returns whether
    Kafka answered within ``timeout_s``. Plaintext connections are not checked."""
    conn = Connection.of(source)
    if not (conn.sasl or conn.tls):
        return True
    seen: list[KafkaError] = []
    client = AdminClient({**conn.librdkafka(), "log_level": 0, "error_cb": seen.append})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.list_topics(timeout=2)
            return True
        except KafkaException as exc:
            seen.append(exc.args[0])
        client.poll(0)  # serves error_cb: the authentication and TLS errors come that way
        for err in seen:
            refused = explain_refusal(conn, err)
            if refused:
                raise ConnectionError(refused)
        if time.monotonic() >= deadline:
            return False


def explain_refusal(conn: Connection, err: KafkaError) -> str | None:
    """The one line for an error that retrying cannot fix, naming the setting; None for others."""
    text = err.str()
    where = conn.bootstrap_servers
    if err.code() == KafkaError._AUTHENTICATION or "SASL authentication" in text:
        if conn.sasl_mechanism == "OAUTHBEARER":
            return (
                f"Kafka at {where} refused the OAUTHBEARER token: check "
                "CONTINUUM_KAFKA_OAUTH_CLIENT_ID / CONTINUUM_KAFKA_OAUTH_CLIENT_SECRET / "
                f"CONTINUUM_KAFKA_OAUTH_TOKEN_URL ({_reason(text)})"
            )
        return (
            f"Kafka at {where} refused SASL {conn.sasl_mechanism} login for user "
            f"{conn.sasl_username!r}: check CONTINUUM_KAFKA_SASL_USERNAME and "
            f"CONTINUUM_KAFKA_SASL_PASSWORD ({_reason(text)})"
        )
    if err.code() == KafkaError._SSL or "SSL handshake failed" in text:
        if "verify failed" in text or "certificate" in text.lower():
            ca = conn.ssl_ca_location or "the system CA store"
            return (
                f"TLS to Kafka at {where} failed: the broker's certificate is not trusted by "
                f"CONTINUUM_KAFKA_SSL_CA_LOCATION ({ca}) or does not name the host "
                f"(CONTINUUM_KAFKA_SSL_CHECK_HOSTNAME) ({_reason(text)})"
            )
        return f"TLS to Kafka at {where} failed: {_reason(text)}; check CONTINUUM_KAFKA_SSL_*"
    if err.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    ):
        return f"Kafka at {where} denied user {conn.sasl_username!r}: {_reason(text)} (ACLs)"
    return None


def _reason(text: str) -> str:
    """The broker's words, shortened; a secret is never part of them."""
    return text.strip()[:200]


def read_range(
    source: str | Connection | Settings,
    group: str,
    topic: str,
    ranges: Mapping[int, tuple[int, int | None]],
    *,
    deadline_s: float | None = None,
) -> Iterator[Message]:
    """The records of each partition in [start, end) (end None: the partition's end as of the
    call), clamped to what the partition holds; assigned without a group, nothing committed.
    Non-fatal consume errors (a broker going away) are waited through; with ``deadline_s``,
    partitions not read to their end in time raise ``TimeoutError``."""
    c = consumer(source, group, {"enable.partition.eof": True})
    try:
        bounds: dict[int, tuple[int, int]] = {}
        for p, (start, end) in ranges.items():
            lo, hi = with_retry(
                lambda p=p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10),
                f"reading the offsets of {topic}[{p}]",
            )
            first, last = max(start, lo), hi if end is None else min(end, hi)
            if last > first:
                bounds[p] = (first, last)
        c.assign([TopicPartition(topic, p, first) for p, (first, _) in bounds.items()])
        left = set(bounds)
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        while left:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partitions {sorted(left)} not read to the end")
            for msg in c.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        left.discard(msg.partition())
                    elif err.fatal():
                        raise KafkaException(err)
                    continue
                p = msg.partition()
                if p not in left or msg.offset() >= bounds[p][1]:
                    left.discard(p)
                    continue
                yield msg
                if msg.offset() + 1 >= bounds[p][1]:
                    left.discard(p)
    finally:
        c.close()


def read_to_end(
    source: str | Connection | Settings,
    name: str,
    timeout_s: float = 10.0,
    group_id: str = "continuum-read",
) -> Iterator[Message]:
    """Every message of the (full-named) topic ``name``, each partition from its beginning up to
    its end as of the call. Raises when the topic is missing or the end is not reached within
    3 x ``timeout_s``."""
    c = consumer(source, group_id)
    try:
        md = with_retry(
            lambda: c.list_topics(name, timeout=timeout_s).topics[name], f"reading {name}"
        )
    finally:
        c.close()
    if md.error is not None:
        raise RuntimeError(f"topic {name}: {md.error} (run `continuum topics create`)")
    ranges: dict[int, tuple[int, int | None]] = {p: (0, None) for p in md.partitions}
    yield from read_range(source, group_id, name, ranges, deadline_s=timeout_s * 3)


def partitions_of(client: Any, topic: str, timeout_s: float = 10.0) -> list[int]:
    """The partitions of ``topic`` as ``client`` (a consumer or an admin client) sees them;
    a topic that does not exist (yet) raises a retryable error."""
    md = client.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    return sorted(md.partitions)


def producer(source: str | Connection | Settings, conf: Mapping[str, Any]) -> Producer:
    return Producer(client_config(source, conf))


def admin(source: str | Connection | Settings) -> AdminClient:
    return AdminClient(client_config(source))
