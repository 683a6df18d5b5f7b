"""Personal data in user text, found and redacted before an event reaches Kafka (topics are durable
and replayable: a leak there multiplies). One detector for the SDK, the retraining dataset and the
evaluation harness's safety checks.

Types: ``EMAIL``; ``PHONE`` (Dominican 809/829/849 with or without +1 and separators, and any
international number written with a leading +); ``CEDULA`` (Dominican id: 000-0000000-0, or its 11
digits with a valid check digit); ``CARD`` (13-19 digits, Luhn-verified); ``PLATE`` (Dominican plates: one
letter and six digits, e.g. A123456 or G-123456). Near misses stay: a 10-digit order number
without a Dominican area code is not a phone, a 16-digit number that fails Luhn is not a card.

A redacted value becomes a typed placeholder, ``<PHONE:1f3a9c2e>`` with a keyed hash (HMAC-SHA256
of the normalised value with ``pii_hash_key``) so the same value still joins across events, or
``<PHONE>`` when no key is set (a hash without a secret key would be a dictionary away from the
number). Per field the action is ``off``, ``redact`` or ``reject`` (the event is refused with an
error naming the field and the type, never the value).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

EMAIL, PHONE, CEDULA, CARD, PLATE = "EMAIL", "PHONE", "CEDULA", "CARD", "PLATE"
PII_TYPES = (EMAIL, PHONE, CEDULA, CARD, PLATE)
ACTIONS = ("off", "redact", "reject")

# Order matters where patterns could overlap: the specific, checked ones first.
_PATTERN = re.compile(
    r"(?P<EMAIL>\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b)"
    r"|(?P<CEDULA>(?<![\d-])(?:\d{3}-\d{7}-\d|\d{11})(?![\d-]))"
    r"|(?P<CARD>(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-]))"
    r"|(?P<PHONE>(?<![\w+])(?:\+?1[\s.-]?)?\(?(?:809|829|849)\)?[\s.-]?\d{3}[\s.-]?\d{4}(?!\d)"
    r"|(?<![\w+])\+(?:[2-9]\d{0,2})(?:[\s.-]?\d){7,12}(?!\d))"
    r"|(?P<PLATE>\b[A-Z]-?\d{6}\b)"
)

# A cheap first look (a twentieth of the full pattern's time on chat text): an @, or six or more
# digits with separators between (every phone, cédula, card and plate has that). Most texts stop
# here: 2 % of the simulator's chat texts go on to the full pattern.
_DIGIT_RUN = re.compile(r"\d[\d\s().+-]{4,}\d")


def might_hold_pii(text: str) -> bool:
    return "@" in text or _DIGIT_RUN.search(text) is not None


# Text fields of the contracts that carry what users and the bot wrote.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "ChatTurn": ("user_query", "bot_response"),
    "Feedback": ("user_query", "bot_response", "correction", "comment"),
}

REDACTIONS = Counter(
    "continuum_pii_redactions_total",
    "Personal data found in event text before it reached Kafka, by type and action",
    ["type", "action"],
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class Found:
    type: str
    start: int
    end: int
    value: str


def find_pii(text: str) -> list[Found]:
    """The personal data in ``text``, in order, checked (Luhn for cards and cédulas)."""
    if not might_hold_pii(text):
        return []
    out: list[Found] = []
    for m in _PATTERN.finditer(text):
        kind = m.lastgroup
        assert kind is not None
        value = m.group()
        digits = re.sub(r"\D", "", value)
        # A card must pass Luhn, and so must a cédula written without its hyphens (the
        # hyphenated form is distinctive enough as it is); what fails may still be a Dominican
        # phone written without separators.
        loose = kind == CARD or (kind == CEDULA and "-" not in value)
        if loose and re.fullmatch(r"1?(?:809|829|849)\d{7}", digits):
            kind = PHONE
        elif loose and not luhn_ok(digits):
            continue
        out.append(Found(kind, m.start(), m.end(), value))
    return out


def _normal(kind: str, value: str) -> str:
    if kind == EMAIL:
        return value.casefold()
    if kind == PLATE:
        return value.replace("-", "").upper()
    digits = re.sub(r"\D", "", value)
    if kind == PHONE and len(digits) == 10:
        digits = "1" + digits  # 809... and +1 809... are the same number
    return digits


def placeholder(kind: str, value: str, key: bytes | None) -> str:
    if not key:
        return f"<{kind}>"
    digest = hmac.new(key, f"{kind}:{_normal(kind, value)}".encode(), hashlib.sha256)
    return f"<{kind}:{digest.hexdigest()[:8]}>"


def redact_text(text: str, key: bytes | None = None) -> tuple[str, list[str]]:
    """``text`` with every piece of personal data replaced; the types replaced, in order."""
    found = find_pii(text)
    if not found:
        return text, []
    parts, last = [], 0
    for f in found:
        parts += [text[last : f.start], placeholder(f.type, f.value, key)]
        last = f.end
    parts.append(text[last:])
    return "".join(parts), [f.type for f in found]


class PIIRejected(ValueError):
    """An event refused because a field set to ``reject`` holds personal data."""

    def __init__(self, schema: str, field: str, types: Iterable[str]) -> None:
        kinds = ", ".join(sorted(set(types)))
        super().__init__(
            f"{schema}.{field} holds personal data ({kinds}) and the policy for it is reject: "
            "remove it at the source or set the field to redact"
        )
        self.schema, self.field, self.types = schema, field, tuple(types)


def parse_policy(default: str, overrides: str = "") -> dict[str, str]:
    """``default`` for every known text field, then ``Schema.field=action,...`` over it."""
    if default not in ACTIONS:
        raise ValueError(f"pii_redaction {default!r}: expected one of {', '.join(ACTIONS)}")
    policy = {f"{s}.{f}": default for s, fields in TEXT_FIELDS.items() for f in fields}
    for item in (p.strip() for p in overrides.split(",") if p.strip()):
        name, _, action = item.partition("=")
        if "." not in name or action not in ACTIONS:
            raise ValueError(
                f"pii_fields {item!r}: expected Schema.field=off|redact|reject, e.g. "
                "ChatTurn.user_query=reject"
            )
        policy[name.strip()] = action
    return policy


class Redactor:
    """Applies a per-field policy to events before they are encoded."""

    def __init__(self, policy: Mapping[str, str] | None = None, key: bytes | None = None) -> None:
        self.policy = dict(policy if policy is not None else parse_policy("redact"))
        self.key = key or None
        self.by_schema: dict[str, list[tuple[str, str]]] = {}
        for name, action in self.policy.items():
            if action != "off":
                schema, _, fld = name.partition(".")
                self.by_schema.setdefault(schema, []).append((fld, action))
        self.counts: dict[str, int] = {}
        self._children: dict[tuple[str, str], Any] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> Redactor:
        key = getattr(settings, "pii_hash_key", "") or ""
        return cls(
            parse_policy(
                getattr(settings, "pii_redaction", "redact"),
                getattr(settings, "pii_fields", ""),
            ),
            key.encode() if key else None,
        )

    def apply(self, schema: str, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with its text fields redacted (a copy when anything changed); raises
        :class:`PIIRejected` for a ``reject`` field that holds personal data."""
        fields = self.by_schema.get(schema)
        if not fields:
            return record
        out = record
        for fld, action in fields:
            text = record.get(fld)
            if not text or not isinstance(text, str) or not might_hold_pii(text):
                continue
            clean, types = redact_text(text, self.key)
            if not types:
                continue
            for t in types:
                self.counts[t] = self.counts.get(t, 0) + 1
                child = self._children.get((t, action))
                if child is None:
                    child = self._children[(t, action)] = REDACTIONS.labels(t, action)
                child.inc()
            if action == "reject":
                raise PIIRejected(schema, fld, types)
            if out is record:
                out = dict(record)
            out[fld] = clean
        return out
