"""Registry-free schema evolution: the compacted ``schemas`` topic.

Without a Schema Registry a record carries only its writer schema's CRC-64-AVRO fingerprint
(Avro single-object encoding). A reader whose catalog lacks that fingerprint (a consumer older
than the producer, during a rolling deploy) would have to dead-letter the record. So:

- the SDK producer publishes each writer schema to ``schemas`` (key: the fingerprint in hex,
  value: the schema's JSON) before its first record with it, and waits briefly for the
  acknowledgement (:class:`SchemaPublisher`);
- a reader meeting an unknown fingerprint looks it up there (:class:`SchemaLookup`: the topic
  read to its end, cached, re-read on a miss at most every ``reread_s`` and for up to
  ``wait_s`` while a just-published schema may still be in flight) and decodes with Avro schema
  resolution to its own current version: new fields ignored, defaults applied.

Only a record whose schema nobody published, or whose schema cannot be resolved to the reader's
(an incompatible change), still goes to the dead-letter topic, with that reason.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from continuum import kafka as clients
from continuum.kafka import Connection
from continuum.topics import topic_spec
from schemas.catalog import SchemaVersion
from schemas.serde import AvroDeserializer, deserializer_for

if TYPE_CHECKING:
    from continuum.settings import Settings

log = logging.getLogger(__name__)
TOPIC = "schemas"
CONTENT_TYPE = ("content-type", b"application/vnd.apache.avro+json")


def schema_record(version: SchemaVersion) -> tuple[str, bytes]:
    """Key and value of a writer schema's record on the schemas topic."""
    return version.fingerprint.hex(), version.schema_str.encode()


class SchemaLookup:
    """fingerprint -> writer schema JSON from the schemas topic (thread-safe, cached)."""

    def __init__(
        self,
        kafka: str | Connection | Settings,
        prefix: str = "",
        *,
        wait_s: float = 10.0,
        reread_s: float = 1.0,
    ) -> None:
        self.kafka = kafka
        self.topic = topic_spec(TOPIC).full_name(prefix)
        self.wait_s = wait_s
        self.reread_s = reread_s
        self._known: dict[str, dict[str, Any]] = {}
        self._read_at = -float("inf")
        self._missing: set[str] = set()
        self._lock = threading.Lock()

    def _read(self) -> None:
        try:
            for m in clients.read_to_end(self.kafka, self.topic, 5.0, "continuum-schemas"):
                key = m.key()
                if key is None or m.value() is None:
                    continue
                try:
                    self._known[key.decode()] = json.loads(m.value())
                except (UnicodeDecodeError, json.JSONDecodeError):
                    log.warning("schemas topic: record %r is not a JSON schema; skipped", key)
        except Exception as exc:  # the topic missing or Kafka away: the record is dead-lettered
            log.warning("schemas topic %s could not be read: %s", self.topic, exc)
        self._read_at = time.monotonic()

    def __call__(self, fingerprint: bytes) -> dict[str, Any] | None:
        key = fingerprint.hex()
        with self._lock:
            if key in self._known:
                return self._known[key]
            if key in self._missing:
                # Asked before and not found: look again now and then, never per record.
                if time.monotonic() - self._read_at >= max(self.reread_s, 30.0):
                    self._read()
                return self._known.get(key)
            deadline = time.monotonic() + self.wait_s
            while True:
                if time.monotonic() - self._read_at >= self.reread_s:
                    self._read()
                if key in self._known:
                    return self._known[key]
                if time.monotonic() >= deadline:
                    self._missing.add(key)
                    return None
                time.sleep(min(self.reread_s, max(0.0, deadline - time.monotonic())))


class SchemaPublisher:
    """Publishes a writer schema through the producer's client before its first record, and
    waits up to ``wait_s`` for the acknowledgement (a failure is logged, never raised: a reader
    that knows the schema does not need the record)."""

    def __init__(self, client: Any, prefix: str = "", *, wait_s: float = 5.0) -> None:
        self.client = client
        self.topic = topic_spec(TOPIC).full_name(prefix)
        self.wait_s = wait_s
        self.published: list[str] = []

    def __call__(self, version: SchemaVersion) -> None:
        key, value = schema_record(version)
        done = threading.Event()
        outcome: list[Any] = []

        def report(err: Any, _msg: Any) -> None:
            outcome.append(err)
            done.set()

        try:
            self.client.produce(self.topic, value, key, headers=[CONTENT_TYPE], on_delivery=report)
        except (BufferError, Exception) as exc:  # never stop a send over this
            log.warning("schema %s of %s not published: %s", key, version.name, exc)
            return
        deadline = time.monotonic() + self.wait_s
        while not done.is_set() and time.monotonic() < deadline:
            self.client.poll(0.05)
        if outcome and outcome[0] is None:
            self.published.append(key)
        else:
            log.warning(
                "schema %s of %s not acknowledged on %s (%s); readers older than this producer "
                "may dead-letter its records",
                key,
                version.name,
                self.topic,
                outcome[0] if outcome else f"no answer in {self.wait_s:.0f}s",
            )


def decoder_for(settings: Settings) -> AvroDeserializer:
    """The deserializer every service uses: the Schema Registry when one is configured, else
    single-object records with the schemas topic for writers newer than this reader."""
    if settings.schema_registry_url:
        return deserializer_for(settings)
    return deserializer_for(settings, SchemaLookup(settings.kafka, settings.topic_prefix))
