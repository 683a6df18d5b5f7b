"""Hypothesis strategies that build valid Continuum events straight from the .avsc contracts."""

from __future__ import annotations

import string
import uuid
from typing import Any

from hypothesis import strategies as st

from schemas.catalog import SchemaVersion

_text = st.text(alphabet=string.ascii_letters + string.digits + " áéíóúñ¿?¡!-_.", max_size=40)
_nonempty = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=20)

# Semantic ranges the contracts promise (see schemas/validation.py).
_FIELD_OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.builds(lambda i: str(uuid.UUID(int=i)), st.integers(0, 2**128 - 1)),
    "event_time": st.integers(0, 4_102_444_800_000),
    "confidence": st.floats(0.0, 1.0),
    "rating": st.integers(1, 5),
    "fallback_rate": st.floats(0.0, 1.0),
    "confidence_mean": st.floats(0.0, 1.0),
    "traffic_split": st.floats(0.0, 100.0),
    "alpha": st.floats(0.001, 0.5),
    "min_samples": st.integers(1, 10_000),
}
_NONNEG = {
    "latency_ms",
    "queue_wait_ms",
    "time_to_first_token_ms",
    "total_ms",
    "latency_p95_ms",
    "prompt_tokens",
    "completion_tokens",
    "turn_index",
    "sample_size",
}
_NONEMPTY = {
    "session_id",
    "model_version",
    "request_id",
    "prediction_id",
    "alert_id",
    "dedup_key",
    "title",
    "trigger_id",
    "experiment_id",
    "control_version",
    "treatment_version",
    "reply_topic",
}


def for_type(t: Any, field: str | None = None) -> st.SearchStrategy[Any]:
    if isinstance(t, list):
        return st.one_of(*[for_type(x, field) for x in t])
    if isinstance(t, dict):
        kind = t["type"]
        if kind == "record":
            return record(t)
        if kind == "enum":
            return st.sampled_from(t["symbols"])
        if kind == "array":
            if field == "messages":
                return st.lists(
                    st.fixed_dictionaries(
                        {
                            "role": st.sampled_from(["system", "user", "assistant"]),
                            "content": _text,
                            "name": st.none(),
                        }
                    ),
                    min_size=1,
                    max_size=4,
                )
            return st.lists(for_type(t["items"]), max_size=3)
        if kind == "map":
            return st.dictionaries(_nonempty, for_type(t["values"]), max_size=3)
        if t.get("logicalType") in ("timestamp-millis",):
            return st.integers(0, 4_102_444_800_000)
        return for_type(kind, field)
    if t == "null":
        return st.none()
    if t == "boolean":
        return st.booleans()
    if t == "int":
        return st.integers(0 if field in _NONNEG else -(2**31), 2**31 - 1)
    if t == "long":
        return st.integers(0 if field in _NONNEG else -(2**63), 2**63 - 1)
    if t in ("double", "float"):
        if field in _NONNEG:
            return st.floats(0, 1e12)
        return st.floats(allow_nan=False, allow_infinity=False, width=64 if t == "double" else 32)
    if t == "string":
        return _nonempty if field in _NONEMPTY else _text
    raise NotImplementedError(t)


def record(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    fields = {}
    for f in schema["fields"]:
        name = f["name"]
        if name in _FIELD_OVERRIDES:
            base = _FIELD_OVERRIDES[name]
            fields[name] = st.one_of(st.none(), base) if isinstance(f["type"], list) else base
        else:
            fields[name] = for_type(f["type"], name)
    return st.fixed_dictionaries(fields)


def events(version: SchemaVersion) -> st.SearchStrategy[dict[str, Any]]:
    strat = record(version.raw)
    if version.name == "Experiment":
        strat = strat.filter(lambda r: r["control_version"] != r["treatment_version"])
    return strat
