"""Errors that name what was wrong: the record type, the field, the value and what was expected."""

from __future__ import annotations

from typing import Any


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class EventValidationError(ValueError):
    """An event does not satisfy its contract; nothing was sent."""

    def __init__(self, schema: str, field: str | None, value: Any, expected: str) -> None:
        self.schema = schema
        self.field = field
        self.value = value
        self.expected = expected
        where = f"{schema}.{field}" if field else schema
        shown = _short(value) if field else ""
        msg = f"{where}: got {shown}, expected {expected}" if field else f"{where}: {expected}"
        super().__init__(msg)


class DecodeError(ValueError):
    """Bytes read from Kafka could not be turned into a valid event."""

    def __init__(self, reason: str, *, schema: str | None = None) -> None:
        self.reason = reason
        self.schema = schema
        super().__init__(reason)
