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

Check = tuple[str, Callable[[Any], bool], str]


def _in(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: v is None or (lo <= v <= hi)


def _nonneg(v: Any) -> bool:
    return v is None or (v >= 0 and math.isfinite(v))


def _finite(v: Any) -> bool:
    return v is None or math.isfinite(v)


def _nonempty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() != "")


def _uuid(v: Any) -> bool:
    return isinstance(v, str) and _UUID.match(v) is not None


def _millis(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _messages(v: Any) -> bool:
    return bool(v) and all(m.get("role") in ROLES for m in v)


COMMON: tuple[Check, ...] = (
    ("event_id", _uuid, "a UUID string like 123e4567-e89b-12d3-a456-426614174000"),
    ("event_time", _millis, "epoch milliseconds (int >= 0)"),
)

RULES: dict[str, tuple[Check, ...]] = {
    "ChatTurn": (
        ("session_id", _nonempty, "a non-empty session id"),
        ("model_version", _nonempty, "a non-empty model version"),
        ("turn_index", _nonneg, "an index >= 0"),
        ("confidence", _in(0.0, 1.0), "a confidence between 0 and 1"),
        ("latency_ms", _nonneg, "a finite latency >= 0 ms"),
        ("queue_wait_ms", _nonneg, "a finite wait >= 0 ms"),
        ("time_to_first_token_ms", _nonneg, "a finite time >= 0 ms"),
        ("prompt_tokens", _nonneg, "a token count >= 0"),
        ("completion_tokens", _nonneg, "a token count >= 0"),
    ),
    "Feedback": (
        ("session_id", _nonempty, "a non-empty session id"),
        ("rating", _in(1, 5), "a rating from 1 to 5"),
        ("turn_index", _nonneg, "an index >= 0"),
    ),
    "InferenceRequest": (
        ("request_id", _nonempty, "a non-empty request id"),
        ("messages", _messages, f"a non-empty list of messages with role in {sorted(ROLES)}"),
        ("reply_topic", _nonempty, "a topic name"),
    ),
    "InferenceResponse": (
        ("request_id", _nonempty, "a non-empty request id"),
        ("prompt_tokens", _nonneg, "a token count >= 0"),
        ("completion_tokens", _nonneg, "a token count >= 0"),
        ("queue_wait_ms", _nonneg, "a finite time >= 0 ms"),
        ("total_ms", _nonneg, "a finite time >= 0 ms"),
    ),
    "Prediction": (
        ("prediction_id", _nonempty, "a non-empty prediction id"),
        ("model_version", _nonempty, "a non-empty model version"),
        ("confidence", _in(0.0, 1.0), "a confidence between 0 and 1"),
        ("latency_ms", _nonneg, "a finite latency >= 0 ms"),
    ),
    "Outcome": (("prediction_id", _nonempty, "a non-empty prediction id"),),
    "DriftSignal": (
        ("model_version", _nonempty, "a non-empty model version"),
        ("value", _finite, "a finite number"),
        ("baseline", _finite, "a finite number"),
        ("change", _finite, "a finite number"),
        ("sample_size", _nonneg, "a count >= 0"),
    ),
    "Alert": (
        ("alert_id", _nonempty, "a non-empty alert id"),
        ("dedup_key", _nonempty, "a non-empty de-duplication key"),
        ("title", _nonempty, "a non-empty title"),
    ),
    "RetrainTrigger": (
        ("trigger_id", _nonempty, "a non-empty trigger id"),
        ("model_version", _nonempty, "a non-empty model version"),
        ("value", _finite, "a finite number"),
        ("threshold", _finite, "a finite number"),
    ),
    "Baseline": (
        ("model_version", _nonempty, "a non-empty model version"),
        ("sample_size", _nonneg, "a count >= 0"),
        ("fallback_rate", _in(0.0, 1.0), "a rate between 0 and 1"),
        ("confidence_mean", _in(0.0, 1.0), "a confidence between 0 and 1"),
        ("latency_p95_ms", _nonneg, "a finite latency >= 0 ms"),
    ),
    "Experiment": (
        ("experiment_id", _nonempty, "a non-empty experiment id"),
        ("control_version", _nonempty, "a non-empty model version"),
        ("treatment_version", _nonempty, "a non-empty model version"),
        ("traffic_split", _in(0.0, 100.0), "a percentage from 0 to 100"),
        ("alpha", _in(1e-9, 0.5), "a significance level in (0, 0.5]"),
        ("min_samples", _in(1, INT_MAX), "at least 1 sample"),
    ),
}


def _int_fields(version: SchemaVersion) -> tuple[str, ...]:
    out = []
    for f in version.raw["fields"]:
        t = f["type"]
        if t == "int" or (isinstance(t, list) and "int" in t):
            out.append(f["name"])
    return tuple(out)


_COMPILED: dict[bytes, tuple[tuple[Check, ...], tuple[str, ...]]] = {}


def _compiled(version: SchemaVersion) -> tuple[tuple[Check, ...], tuple[str, ...]]:
    entry = _COMPILED.get(version.fingerprint)
    if entry is None:
        entry = (COMMON + RULES.get(version.name, ()), _int_fields(version))
        _COMPILED[version.fingerprint] = entry
    return entry


def validate_event(version: SchemaVersion, record: Mapping[str, Any]) -> None:
    """Raise :class:`EventValidationError` naming the first field that breaks the contract."""
    if not isinstance(record, Mapping):
        raise EventValidationError(version.name, None, record, f"a mapping, got {type(record).__name__}")
    checks, int_fields = _compiled(version)
    for name, ok, expected in checks:
        value = record.get(name)
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            raise EventValidationError(version.name, name, value, expected)
    for name in int_fields:
        value = record.get(name)
        if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            raise EventValidationError(version.name, name, value, "a 32-bit int")
    if version.name == "Experiment" and record.get("control_version") == record.get(
        "treatment_version"
    ):
        raise EventValidationError(
            version.name, "treatment_version", record.get("treatment_version"),
            "a model version different from control_version",
        )


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
