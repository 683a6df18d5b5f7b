"""Events from JSON-lines text (``continuum emit``): each line validated and sent, each bad line
reported with its number and the reason, none lost."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from schemas.errors import EventValidationError


@dataclass(frozen=True)
class Rejected:
    line: int
    error: str
    input: str

    def json(self) -> str:
        return json.dumps(
            {"line": self.line, "error": self.error, "input": self.input}, ensure_ascii=False
        )


class LineEmitter:
    """Send each line's event with ``send(record_type, event)``; the type is ``record_type`` or
    the line's own ``"_type"``."""

    def __init__(
        self, send: Callable[[str, dict[str, Any]], Any], record_type: str | None = None
    ) -> None:
        self.send, self.record_type = send, record_type
        self.sent = 0

    def emit(self, lines: Iterable[str]) -> Iterator[Rejected]:
        """Yields each line that was not sent, as it goes."""
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
                schema = self.record_type or obj.pop("_type", None)
                if not schema:
                    raise ValueError('no record type: pass --type or add "_type" to each line')
                self.send(schema, obj)
                self.sent += 1
            except (ValueError, KeyError, EventValidationError) as exc:
                msg = exc.args[0] if isinstance(exc, KeyError) else str(exc)
                yield Rejected(lineno, str(msg), line.rstrip("\n"))
