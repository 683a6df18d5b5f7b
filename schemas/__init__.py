"""Continuum's event contracts (Avro ``.avsc`` files) and their serde.

Two wire formats, both decodable by every consumer: Confluent framing (``0x00`` + schema id) when
a Schema Registry is configured, and Avro single-object encoding (``0xC3 0x01`` + CRC-64-AVRO
fingerprint) when none is.
"""

from __future__ import annotations

from schemas.catalog import SchemaCatalog, SchemaVersion, default_catalog
from schemas.errors import DecodeError, EventValidationError
from schemas.serde import AvroDeserializer, AvroSerializer, Decoded
from schemas.validation import validate_event

__all__ = [
    "AvroDeserializer",
    "AvroSerializer",
    "Decoded",
    "DecodeError",
    "EventValidationError",
    "SchemaCatalog",
    "SchemaVersion",
    "default_catalog",
    "validate_event",
]
