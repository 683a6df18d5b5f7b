"""Avro serde for Continuum events in two wire formats.

* Single-object encoding (Avro spec): ``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint of
  the writer schema + body. Needs no server: the fingerprint names a schema in the catalog.
* Confluent framing: ``00`` + 4-byte big-endian Schema Registry id + body. Used when a registry
  is configured; ids are registered/looked up once and cached.

A reader always resolves the writer's schema to the *current* version of the record type, so old
producers keep working after a schema gains fields with defaults.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Protocol

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from schemas.catalog import SchemaCatalog, SchemaVersion, default_catalog, make_version
from schemas.errors import DecodeError, EventValidationError
from schemas.validation import explain_encode_error, validate_event

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0


class RegistryClient(Protocol):
    """The two calls of confluent-kafka's ``SchemaRegistryClient`` that the serde needs."""

    def register_schema(self, subject_name: str, schema: Any) -> int: ...

    def get_schema(self, schema_id: int) -> Any: ...


class RegistrySettings(Protocol):
    """Where the Schema Registry is and how to authenticate (``continuum.settings.Settings``)."""

    @property
    def schema_registry_url(self) -> str: ...

    @property
    def registry_conf(self) -> Mapping[str, Any]: ...


def make_registry(source: str | RegistrySettings) -> RegistryClient | None:
    """A Schema Registry client for a URL (no credentials) or for settings (URL plus basic auth,
    bearer token and CA file), or None when no registry is configured."""
    if isinstance(source, str):
        url, conf = source, {}
    else:
        url, conf = source.schema_registry_url, dict(source.registry_conf)
    if not url:
        return None
    from confluent_kafka.schema_registry import SchemaRegistryClient

    # "mock://..." gives the in-process mock
    return SchemaRegistryClient.new_client({**conf, "url": url})


# Where a reader finds a writer schema its catalog does not know: fingerprint -> the schema's
# JSON (producers.schema_topic reads the compacted ``schemas`` topic), or None.
WriterLookup = Callable[[bytes], "dict[str, Any] | None"]


def deserializer_for(
    source: str | RegistrySettings = "", writers: WriterLookup | None = None
) -> AvroDeserializer:
    """The deserializer a service uses: single-object records always, Confluent-framed ones too
    when a Schema Registry is configured (the producers frame with it then); ``writers`` finds
    the writer schemas of newer producers in registry-free mode."""
    return AvroDeserializer(registry=make_registry(source), writers=writers)


@dataclass(frozen=True)
class Decoded:
    schema: str
    record: dict[str, Any]
    writer: str  # label of the writer version (current, ChatTurn.v1, registry:<id>)


class AvroSerializer:
    """Validate and encode events; the framing depends on whether a registry is configured."""

    def __init__(
        self,
        catalog: SchemaCatalog | None = None,
        registry: RegistryClient | None = None,
        on_new_writer: Callable[[SchemaVersion], None] | None = None,
    ) -> None:
        """``on_new_writer`` is called once per writer schema before its first single-object
        record is encoded (the SDK publishes it to the ``schemas`` topic for older readers)."""
        self.catalog = catalog or default_catalog()
        self.registry = registry
        self.on_new_writer = on_new_writer
        self._headers: dict[tuple[str, str | None], tuple[bytes, SchemaVersion]] = {}
        self._announced: set[bytes] = set()

    def _header(self, name: str, topic: str | None) -> tuple[bytes, SchemaVersion]:
        key = (name, topic)
        hit = self._headers.get(key)
        if hit is not None:
            return hit
        version = self.catalog.current(name)
        if self.registry is None:
            header = SINGLE_OBJECT_MAGIC + version.fingerprint
            if self.on_new_writer is not None and version.fingerprint not in self._announced:
                self.on_new_writer(version)
                self._announced.add(version.fingerprint)
        else:
            from confluent_kafka.schema_registry import Schema

            subject = f"{topic}-value" if topic else version.full_name
            schema_id = self.registry.register_schema(subject, Schema(version.schema_str, "AVRO"))
            header = bytes([CONFLUENT_MAGIC]) + int(schema_id).to_bytes(4, "big")
        self._headers[key] = (header, version)
        return header, version

    def encode(
        self,
        name: str,
        record: Mapping[str, Any],
        *,
        topic: str | None = None,
        validate: bool = True,
    ) -> bytes:
        header, version = self._header(name, topic)
        if validate:  # also refuses unknown field names, which the writer would drop
            validate_event(version, record)
        buf = BytesIO()
        buf.write(header)
        try:
            schemaless_writer(buf, version.wire, record)
        except (ValueError, TypeError, KeyError, OverflowError, AttributeError) as exc:
            raise explain_encode_error(version, record, exc) from None
        return buf.getvalue()


class AvroDeserializer:
    """Decode either wire format into a dict of the current schema, validating it."""

    def __init__(
        self,
        catalog: SchemaCatalog | None = None,
        registry: RegistryClient | None = None,
        writers: WriterLookup | None = None,
    ) -> None:
        self.catalog = catalog or default_catalog()
        self.registry = registry
        self.writers = writers
        self._registry_versions: dict[int, SchemaVersion] = {}

    def _published_version(self, fingerprint: bytes) -> SchemaVersion | None:
        """A writer schema a newer producer published (registry-free evolution), made
        decodable from now on; None when nobody published it."""
        if self.writers is None:
            return None
        raw = self.writers(fingerprint)
        if raw is None:
            return None
        try:
            version = make_version(raw, label="schemas-topic")
        except Exception as exc:  # a malformed schema record
            raise DecodeError(
                f"writer schema {fingerprint.hex()} from the schemas topic is not valid Avro: {exc}"
            ) from None
        if version.fingerprint != fingerprint:
            raise DecodeError(
                f"the schemas topic's record for {fingerprint.hex()} holds a schema whose "
                f"fingerprint is {version.fingerprint.hex()}"
            )
        try:
            return self.catalog.add_writer(raw, label="schemas-topic")
        except ValueError as exc:
            raise DecodeError(str(exc)) from None

    def _registry_version(self, schema_id: int) -> SchemaVersion:
        hit = self._registry_versions.get(schema_id)
        if hit is not None:
            return hit
        if self.registry is None:
            raise DecodeError(
                f"record uses Confluent framing (schema id {schema_id}) but no schema registry "
                "is configured (set CONTINUUM_SCHEMA_REGISTRY_URL)"
            )
        try:
            schema = self.registry.get_schema(schema_id)
        except Exception as exc:  # registry errors vary by transport
            raise DecodeError(
                f"schema id {schema_id} could not be fetched from the registry: {exc}"
            ) from None
        version = make_version(json.loads(schema.schema_str), label=f"registry:{schema_id}")
        self._registry_versions[schema_id] = version
        return version

    def writer_of(self, data: bytes) -> tuple[SchemaVersion, int]:
        """The writer schema of a framed record and the offset where its body starts."""
        if not data:
            raise DecodeError("empty record value (expected an Avro-encoded event)")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise DecodeError(f"truncated single-object header ({len(data)} bytes, need 10)")
            version = self.catalog.by_fingerprint(data[2:10])
            if version is None:
                version = self._published_version(data[2:10])
            if version is None:
                raise DecodeError(
                    f"unknown writer schema fingerprint {data[2:10].hex()} "
                    "(not a Continuum schema, a version this reader does not know, and not "
                    "published on the schemas topic)"
                )
            return version, 10
        if data[0] == CONFLUENT_MAGIC:
            if len(data) < 5:
                raise DecodeError(f"truncated Confluent header ({len(data)} bytes, need 5)")
            return self._registry_version(int.from_bytes(data[1:5], "big")), 5
        raise DecodeError(
            f"unknown wire format: first byte 0x{data[0]:02x} (expected 0xc3 0x01 for Avro "
            "single-object encoding or 0x00 for Confluent framing)"
        )

    def decode(self, data: bytes, expected: str | None = None, *, validate: bool = True) -> Decoded:
        """Decode and (unless ``validate`` is False) check the event's contract rules.

        Callers that must answer an invalid event (the inference worker replies with an error)
        decode without validation, then call :func:`schemas.validation.validate_event`."""
        writer, offset = self.writer_of(data)
        try:
            reader = self.catalog.current(writer.name)
        except KeyError as exc:
            raise DecodeError(str(exc)) from None
        if expected is not None and reader.name != expected:
            raise DecodeError(
                f"record is a {reader.name}, this topic carries {expected}", schema=reader.name
            )
        buf = BytesIO(data)
        buf.seek(offset)
        try:
            if writer.fingerprint == reader.fingerprint:
                record = schemaless_reader(buf, writer.wire, None)
            else:
                record = schemaless_reader(buf, writer.wire, reader.wire)
        except SchemaResolutionError as exc:
            raise DecodeError(
                f"writer schema {writer.label} of {writer.name} is incompatible with this "
                f"reader's: {exc}",
                schema=writer.name,
            ) from None
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
            raise DecodeError(
                f"corrupt {writer.name} body: {type(exc).__name__}: {exc}", schema=writer.name
            ) from None
        if buf.tell() != len(data):
            raise DecodeError(
                f"corrupt {writer.name} body: {len(data) - buf.tell()} trailing bytes",
                schema=writer.name,
            )
        if not isinstance(record, dict):
            raise DecodeError(f"corrupt {writer.name} body: not a record", schema=writer.name)
        try:
            if validate:
                validate_event(reader, record)
        except EventValidationError as exc:
            raise DecodeError(f"invalid {reader.name}: {exc}", schema=reader.name) from None
        return Decoded(reader.name, record, writer.label)


def leading_event_id(data: bytes) -> str | None:
    """The ``event_id`` of an encoded event without decoding the rest: every event contract
    declares ``event_id`` (a string) first, and Avro writes fields in order, so it is the string
    right after the wire-format header. None when the bytes are not an event of either format."""
    if data[:2] == SINGLE_OBJECT_MAGIC:
        pos = 10
    elif data[:1] == bytes([CONFLUENT_MAGIC]):
        pos = 5
    else:
        return None
    shift = n = 0
    while pos < len(data):
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    else:
        return None
    length = (n >> 1) ^ -(n & 1)
    if length < 0 or pos + length > len(data):
        return None
    try:
        return data[pos : pos + length].decode()
    except UnicodeDecodeError:
        return None
