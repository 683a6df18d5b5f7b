"""The schema catalog: every record type, its current version and the older versions still read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).parent / "avsc"
NAMESPACE = "io.continuum.events"

_EMPTY64 = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


_FP_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO (Rabin) fingerprint, as the Avro specification defines it."""
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


@dataclass(frozen=True)
class SchemaVersion:
    """One version of a record schema, parsed once."""

    name: str  # short record name, e.g. ChatTurn
    raw: dict[str, Any]
    parsed: Any
    canonical: str
    fingerprint: bytes  # 8 bytes, little-endian, as single-object encoding writes it
    label: str  # "current" or the history file's stem, e.g. ChatTurn.v1
    wire: Any  # parsed without logical types: timestamps stay int millis, UUIDs stay str

    @property
    def schema_str(self) -> str:
        return json.dumps(self.raw, separators=(",", ":"), ensure_ascii=False)

    @property
    def full_name(self) -> str:
        return f"{self.raw.get('namespace', NAMESPACE)}.{self.raw['name']}"

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.raw["fields"])


def _strip_logical(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


def make_version(raw: dict[str, Any], label: str = "current") -> SchemaVersion:
    parsed = fastavro.parse_schema(raw)
    canonical = to_parsing_canonical_form(parsed)
    fp = crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")
    # Logical types do not change the bytes (and are not part of the fingerprint); reading and
    # writing without them keeps event_time an int and skips per-field conversions.
    wire = fastavro.parse_schema(_strip_logical(raw))
    return SchemaVersion(raw["name"], raw, parsed, canonical, fp, label, wire)


class SchemaCatalog:
    """Current schemas by name and every known version by fingerprint.

    Readers always resolve to the *current* version of a record type; writers may have used any
    version listed under ``history/`` (old-writer / new-reader resolution).
    """

    def __init__(self, directory: Path = SCHEMA_DIR) -> None:
        self._current: dict[str, SchemaVersion] = {}
        self._by_fp: dict[bytes, SchemaVersion] = {}
        for path in sorted(directory.glob("*.avsc")):
            version = make_version(self._load(path))
            if version.name != path.stem:
                raise ValueError(
                    f"{path}: record is named {version.name!r}, file says {path.stem!r}"
                )
            self._current[version.name] = version
            self._by_fp[version.fingerprint] = version
        for path in sorted((directory / "history").glob("*.avsc")):
            self.add_writer(self._load(path), label=path.stem)

    @staticmethod
    def _load(path: Path) -> dict[str, Any]:
        try:
            raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return raw
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None

    def add_writer(self, raw: dict[str, Any], label: str = "extra") -> SchemaVersion:
        """Make an older (or foreign) writer schema decodable by fingerprint."""
        version = make_version(raw, label)
        if version.name not in self._current:
            raise ValueError(f"writer schema {version.name!r} has no current version to resolve to")
        self._by_fp.setdefault(version.fingerprint, version)
        return version

    def current(self, name: str) -> SchemaVersion:
        short = name.rsplit(".", 1)[-1]
        try:
            return self._current[short]
        except KeyError:
            known = ", ".join(sorted(self._current))
            raise KeyError(f"unknown record type {name!r}; known: {known}") from None

    def by_fingerprint(self, fingerprint: bytes) -> SchemaVersion | None:
        return self._by_fp.get(fingerprint)

    def names(self) -> list[str]:
        return sorted(self._current)

    def versions(self, name: str) -> list[SchemaVersion]:
        return [v for v in self._by_fp.values() if v.name == name]


@lru_cache(maxsize=1)
def default_catalog() -> SchemaCatalog:
    return SchemaCatalog()
