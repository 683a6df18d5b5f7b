"""Semantic checks on events, beyond what the Avro types say (ranges, ids, non-empty keys).

They run before every send and after every decode, so they must stay cheap: a few comparisons
per field, no per-event allocation beyond the error when one is raised.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from fastavro.validation import ValidationError, validate

from schemas.catalog import SchemaVersion
from schemas.errors import EventValidationError

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
ROLES = frozenset({"system", "user", "assistant", "tool"})

# A rule is (field, kind, expected-wording); kinds are compiled into one plain Python function per
# schema (see _compile) so a valid event costs a handful of comparisons and no calls.
Rule = tuple[str, Any, str]
NONEMPTY, NONNEG, FINITE, UUID, MILLIS, MESSAGES = (
    "nonempty",
    "nonneg",
    "finite",
    "uuid",
    "millis",
    "messages",
)


def _in(lo: float, hi: float) -> tuple[str, float, float]:
    return ("range", lo, hi)


COMMON: tuple[Rule, ...] = (
    ("event_id", UUID, "a UUID string like 123e4567-e89b-12d3-a456-426614174000"),
    ("event_time", MILLIS, "epoch milliseconds (int >= 0)"),
)

RULES: dict[str, tuple[Rule, ...]] = {
    "ChatTurn": (
        ("session_id", NONEMPTY, "a non-empty session id"),
        ("model_version", NONEMPTY, "a non-empty model version"),
        ("turn_index", NONNEG, "an index >= 0"),
        ("confidence", _in(0.0, 1.0), "a confidence between 0 and 1"),
        ("latency_ms", NONNEG, "a finite latency >= 0 ms"),
        ("queue_wait_ms", NONNEG, "a finite wait >= 0 ms"),
        ("time_to_first_token_ms", NONNEG, "a finite time >= 0 ms"),
        ("prompt_tokens", NONNEG, "a token count >= 0"),
        ("completion_tokens", NONNEG, "a token count >= 0"),
    ),
    "Feedback": (
        ("session_id", NONEMPTY, "a non-empty session id"),
        ("rating", _in(1, 5), "a rating from 1 to 5"),
        ("turn_index", NONNEG, "an index >= 0"),
    ),
    "InferenceRequest": (
        ("request_id", NONEMPTY, "a non-empty request id"),
        ("messages", MESSAGES, f"a non-empty list of messages with role in {sorted(ROLES)}"),
        ("reply_topic", NONEMPTY, "a topic name"),
    ),
    "InferenceResponse": (
        ("request_id", NONEMPTY, "a non-empty request id"),
        ("prompt_tokens", NONNEG, "a token count >= 0"),
        ("completion_tokens", NONNEG, "a token count >= 0"),
        ("queue_wait_ms", NONNEG, "a finite time >= 0 ms"),
        ("total_ms", NONNEG, "a finite time >= 0 ms"),
    ),
    "Prediction": (
        ("prediction_id", NONEMPTY, "a non-empty prediction id"),
        ("model_version", NONEMPTY, "a non-empty model version"),
        ("confidence", _in(0.0, 1.0), "a confidence between 0 and 1"),
        ("latency_ms", NONNEG, "a finite latency >= 0 ms"),
    ),
    "Outcome": (("prediction_id", NONEMPTY, "a non-empty prediction id"),),
    "DriftSignal": (
        ("model_version", NONEMPTY, "a non-empty model version"),
        ("value", FINITE, "a finite number"),
        ("baseline", FINITE, "a finite number"),
        ("change", FINITE, "a finite number"),
        ("sample_size", NONNEG, "a count >= 0"),
    ),
    "Alert": (
        ("alert_id", NONEMPTY, "a non-empty alert id"),
        ("dedup_key", NONEMPTY, "a non-empty de-duplication key"),
        ("title", NONEMPTY, "a non-empty title"),
    ),
    "RetrainTrigger": (
        ("trigger_id", NONEMPTY, "a non-empty trigger id"),
        ("model_version", NONEMPTY, "a non-empty model version"),
        ("value", FINITE, "a finite number"),
        ("threshold", FINITE, "a finite number"),
    ),
    "Baseline": (
        ("model_version", NONEMPTY, "a non-empty model version"),
        ("sample_size", NONNEG, "a count >= 0"),
        ("fallback_rate", _in(0.0, 1.0), "a rate between 0 and 1"),
        ("confidence_mean", _in(0.0, 1.0), "a confidence between 0 and 1"),
        ("latency_p95_ms", NONNEG, "a finite latency >= 0 ms"),
    ),
    "Experiment": (
        ("experiment_id", NONEMPTY, "a non-empty experiment id"),
        ("control_version", NONEMPTY, "a non-empty model version"),
        ("treatment_version", NONEMPTY, "a non-empty model version"),
        ("traffic_split", _in(0.0, 100.0), "a percentage from 0 to 100"),
        ("alpha", _in(1e-9, 0.5), "a significance level in (0, 0.5]"),
        ("min_samples", _in(1, INT_MAX), "at least 1 sample"),
    ),
}

# Each kind is the condition under which value ``v`` is BAD (None passes: nullability is Avro's job).
_BAD: dict[str, str] = {
    NONEMPTY: "v is not None and (v.__class__ is not str or not v.strip())",
    NONNEG: "v is not None and not (0 <= v < _INF)",
    FINITE: "v is not None and not (-_INF < v < _INF)",
    UUID: "v.__class__ is not str or _UUID_MATCH(v) is None",
    MILLIS: "v.__class__ is not int or v < 0",
    MESSAGES: "not v or any(m.get('role') not in _ROLES for m in v)",
    "int32": "v.__class__ is int and not (_INT_MIN <= v <= _INT_MAX)",
}


def _compile(
    rules: tuple[Rule, ...], int_fields: tuple[str, ...], known: frozenset[str] | None = None
) -> Callable[[Mapping[str, Any]], Rule | None]:
    """One function per schema returning the first broken rule, or None. NaN fails every
    comparison, so it is rejected by the range-style kinds. With ``known``, a field name outside
    the schema (a typo) is reported rather than silently dropped by the writer."""
    lines = ["def check(r):", "    get = r.get"]
    table: list[Rule] = []
    if known is not None:
        table.append(("", "unknown-field", ""))
        lines.append("    if not r.keys() <= _KNOWN: return _T[0]")
    for name, kind, expected in list(rules) + [(f, "int32", "a 32-bit int") for f in int_fields]:
        table.append((name, kind, expected))
        i = len(table) - 1
        if isinstance(kind, tuple):
            _, lo, hi = kind
            cond = f"v is not None and not ({lo!r} <= v <= {hi!r})"
        else:
            cond = _BAD[kind]
        lines += [f"    v = get({name!r})", f"    if {cond}: return _T[{i}]"]
    lines.append("    return None")
    env = {
        "_INF": math.inf,
        "_UUID_MATCH": _UUID.match,
        "_ROLES": ROLES,
        "_INT_MIN": INT_MIN,
        "_INT_MAX": INT_MAX,
        "_T": table,
        "_KNOWN": known,
    }
    exec("\n".join(lines), env)  # noqa: S102 - source built only from the constant rules above
    check: Callable[[Mapping[str, Any]], tuple[str, Any, str] | None] = env["check"]  # type: ignore[assignment]
    return check


def _int_fields(version: SchemaVersion) -> tuple[str, ...]:
    out = []
    for f in version.raw["fields"]:
        t = f["type"]
        if t == "int" or (isinstance(t, list) and "int" in t):
            out.append(f["name"])
    return tuple(out)


_COMPILED: dict[bytes, Callable[[Mapping[str, Any]], Rule | None]] = {}


def validate_event(version: SchemaVersion, record: Mapping[str, Any]) -> None:
    """Raise :class:`EventValidationError` naming the first field that breaks the contract."""
    if type(record) is not dict and not isinstance(record, Mapping):
        raise EventValidationError(
            version.name,
            None,
            record,
            f"a mapping of field names to values, got {type(record).__name__}",
        )
    check = _COMPILED.get(version.fingerprint)
    if check is None:
        check = _compile(_rules(version), _int_fields(version), frozenset(version.field_names))
        _COMPILED[version.fingerprint] = check
    try:
        broken = check(record)
    except (TypeError, AttributeError):  # a comparison met a wrong type: find which rule
        broken = next(r for r in _rules(version) + _int_rules(version) if _breaks(r, record))
    if broken is not None:
        name, kind, expected = broken
        if kind == "unknown-field":
            name = sorted(k for k in record if k not in version.field_names)[0]
            expected = f"no such field (known: {', '.join(version.field_names)})"
        raise EventValidationError(version.name, name, record.get(name), expected)
    if version.name == "Experiment" and record.get("control_version") == record.get(
        "treatment_version"
    ):
        raise EventValidationError(
            version.name,
            "treatment_version",
            record.get("treatment_version"),
            "a model version different from control_version",
        )


def _rules(version: SchemaVersion) -> tuple[Rule, ...]:
    return COMMON + RULES.get(version.name, ())


def _int_rules(version: SchemaVersion) -> tuple[Rule, ...]:
    return tuple((f, "int32", "a 32-bit int") for f in _int_fields(version))


def _breaks(rule: Rule, record: Mapping[str, Any]) -> bool:
    try:
        return _compile((rule,), ())(record) is not None
    except (TypeError, AttributeError):
        return True


def _error_lines(err: ValidationError) -> list[str]:
    lines = getattr(err, "errors", None) or err.args
    return [str(x) for x in lines]


_PATH_MSG = re.compile(r"^(?P<path>[\w.]+) is <.*> of type .*$")
_NONE_MSG = re.compile(r"^Field\((?P<path>[\w.]+)\) is None expected .*$")


def describe_type(avro_type: Any) -> str:
    """Human wording of an Avro type: ``["null", "double"]`` -> ``null or double``."""
    if isinstance(avro_type, list):
        return " or ".join(describe_type(t) for t in avro_type)
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "array":
            return f"a list of {describe_type(avro_type['items'])}"
        if kind == "map":
            return f"a map of string to {describe_type(avro_type['values'])}"
        if kind == "enum":
            return f"one of {avro_type['symbols']}"
        if kind == "record":
            return f"a {avro_type['name']} record"
        return describe_type(kind)
    return str(avro_type)


def explain_encode_error(
    version: SchemaVersion, record: Mapping[str, Any], exc: Exception
) -> EventValidationError:
    """Turn a writer failure into an error that names the field, the value and the expected type."""
    fields = {f["name"]: f for f in version.raw["fields"]}
    extra = sorted(k for k in record if k not in fields)
    if extra:
        known = ", ".join(fields)
        return EventValidationError(
            version.name, extra[0], record[extra[0]], f"no such field (known: {known})"
        )
    for name, f in fields.items():
        if name not in record and "default" not in f:
            return EventValidationError(version.name, name, None, "a value: the field is required")
    try:
        validate(record, version.wire, raise_errors=True)
    except ValidationError as verr:
        prefix = version.full_name + "."
        for line in _error_lines(verr):
            m = _PATH_MSG.match(line) or _NONE_MSG.match(line)
            if m:
                path = m.group("path").removeprefix(prefix)
                top = path.split(".")[0]
                if top in fields:
                    expected = describe_type(fields[top]["type"])
                    return EventValidationError(version.name, top, record.get(top), expected)
        return EventValidationError(version.name, None, None, "; ".join(_error_lines(verr)))
    return EventValidationError(version.name, None, None, f"could not be encoded: {exc}")
