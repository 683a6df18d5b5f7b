"""Every number that decides something, by one flat name, with the seeds' values as defaults.

Precedence (lowest first): the seed default < the global settings (a thresholds file, then the
``thresholds`` setting: ``CONTINUUM_THRESHOLDS`` / ``--thresholds name=value,...``) < the model's
overrides on the compacted ``thresholds`` topic (``continuum thresholds set``), which running
workers apply from their next window without a restart.

A name can stand in several groups when it is one seed number (``fallback_warning`` is the
alert rule's and the health check's 5 %); setting it sets it everywhere."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from schemas.ids import stable_id
from streams.logic.alerts import AlertThresholds
from streams.logic.drift import DriftThresholds
from streams.logic.health import HealthThresholds
from streams.logic.retrain import RetrainPolicy

GROUPS: dict[str, type] = {
    "drift": DriftThresholds,
    "alerts": AlertThresholds,
    "retrain": RetrainPolicy,
    "health": HealthThresholds,
}
# name -> the groups that hold it
WHERE: dict[str, list[str]] = {}
_TYPES: dict[str, str] = {}
for _group, _cls in GROUPS.items():
    for _f in fields(_cls):
        WHERE.setdefault(_f.name, []).append(_group)
        _TYPES[_f.name] = str(_f.type)
NAMES = tuple(sorted(WHERE))
# Per worker, not per model: timing of the worker's own watches and resources.
GLOBAL_ONLY = frozenset(
    {
        "service_timeout_s",
        "lag_warning",
        "lag_critical",
        "forget_worker_s",
        "low_confidence_warning",
        "low_confidence_critical",
        "memory_warning",
        "memory_critical",
    }
)
# Shares and probabilities: at most 1.
SHARES = frozenset(
    {
        "fallback_warning",
        "fallback_critical",
        "min_confidence",
        "null_rate",
        "outlier_share",
        "min_accuracy",
        "memory_warning",
        "memory_critical",
        "low_confidence_warning",
        "low_confidence_critical",
    }
)
# (lower, upper): the first may not exceed the second.
ORDERED = (
    ("fallback_warning", "fallback_critical"),
    ("memory_warning", "memory_critical"),
    ("low_confidence_warning", "low_confidence_critical"),
    ("lag_warning", "lag_critical"),
)


def seed_defaults() -> dict[str, float]:
    out: dict[str, float] = {}
    for group in GROUPS.values():
        for f in fields(group):
            out.setdefault(f.name, float(getattr(group(), f.name)))
    return out


def check(values: Mapping[str, Any], *, per_model: bool = False) -> dict[str, float]:
    """The values as numbers, or ValueError naming every bad name or value and what is allowed;
    nothing is half-applied."""
    problems: list[str] = []
    out: dict[str, float] = {}
    for name, raw in values.items():
        if name not in WHERE:
            problems.append(f"unknown threshold {name!r}; known: {', '.join(NAMES)}")
            continue
        if per_model and name in GLOBAL_ONLY:
            problems.append(
                f"{name} is set per worker (settings: CONTINUUM_THRESHOLDS), not per model"
            )
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            problems.append(f"{name}={raw!r}: expected a number")
            continue
        if not math.isfinite(value) or value < 0:
            problems.append(f"{name}={raw!r}: expected a finite number >= 0")
            continue
        if name in SHARES and value > 1:
            problems.append(f"{name}={raw!r}: a share, expected 0..1")
            continue
        if _TYPES[name] == "int" and not value.is_integer():
            problems.append(f"{name}={raw!r}: expected a whole number")
            continue
        out[name] = value
    merged = {**seed_defaults(), **out}
    for low, high in ORDERED:
        if (low in out or high in out) and merged[low] > merged[high]:
            problems.append(f"{low}={merged[low]:g} exceeds {high}={merged[high]:g}")
    if problems:
        raise ValueError("; ".join(problems))
    return out


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``name=value`` items (also comma-separated) into a dict of raw strings."""
    out: dict[str, str] = {}
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"expected name=value, got {part!r}")
            out[name.strip()] = value.strip()
    return out


def load_file(path: str | Path) -> dict[str, float]:
    """A thresholds file: a JSON object ``{"name": value}`` (or ``{"thresholds": {...}}``)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise ValueError(f"thresholds file {p}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"thresholds file {p}: not JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("thresholds"), dict):
        data = data["thresholds"]
    if not isinstance(data, dict):
        raise ValueError(f"thresholds file {p}: expected a JSON object of name -> number")
    try:
        return check(data)
    except ValueError as exc:
        raise ValueError(f"thresholds file {p}: {exc}") from None


@dataclass(frozen=True)
class Thresholds:
    drift: DriftThresholds = field(default_factory=DriftThresholds)
    alerts: AlertThresholds = field(default_factory=AlertThresholds)
    retrain: RetrainPolicy = field(default_factory=RetrainPolicy)
    health: HealthThresholds = field(default_factory=HealthThresholds)

    def with_values(self, values: Mapping[str, float]) -> Thresholds:
        changed: dict[str, Any] = {}
        for group in GROUPS:
            current = getattr(self, group)
            kw = {
                f.name: (int(values[f.name]) if str(f.type) == "int" else float(values[f.name]))
                for f in fields(current)
                if f.name in values
            }
            if kw:
                changed[group] = replace(current, **kw)
        return replace(self, **changed) if changed else self

    def values(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for group in GROUPS:
            current = getattr(self, group)
            for f in fields(current):
                out.setdefault(f.name, float(getattr(current, f.name)))
        return out


def in_force(
    global_values: Mapping[str, float], model_values: Mapping[str, float] | None = None
) -> tuple[Thresholds, dict[str, str]]:
    """The thresholds for one model and where each value comes from (seed, settings, model)."""
    model_values = dict(model_values or {})
    t = Thresholds().with_values(global_values).with_values(model_values)
    sources = {
        name: "model" if name in model_values else "settings" if name in global_values else "seed"
        for name in NAMES
    }
    return t, sources


def describe(values: Mapping[str, float], names: Iterable[str]) -> dict[str, str]:
    """``{name: value}`` strings for an event's details (the values in force it was decided on)."""
    return {n: f"{values[n]:g}" for n in names if n in values}


__all__ = [
    "GLOBAL_ONLY",
    "GROUPS",
    "NAMES",
    "Thresholds",
    "check",
    "describe",
    "in_force",
    "load_file",
    "parse_assignments",
    "seed_defaults",
]


def with_set(have: Mapping[str, float], assignments: Iterable[str]) -> dict[str, float]:
    """A model's overrides after ``name=value`` assignments (checked: unknown names, values out
    of range and global-only names are refused, naming what was wrong)."""
    new = check(parse_assignments(assignments), per_model=True)
    if not new:
        raise ValueError("thresholds set needs name=value pairs")
    return check({**have, **new}, per_model=True)


def with_unset(have: Mapping[str, float], names: Iterable[str], model: str) -> dict[str, float]:
    """A model's overrides without ``names`` (comma lists allowed); each must be set."""
    wanted = [n.strip() for item in names for n in item.split(",") if n.strip()]
    missing = [n for n in wanted if n not in have]
    if not wanted or missing:
        raise ValueError(
            f"thresholds unset needs names set for {model}; not set: "
            f"{', '.join(missing) or '(none given)'}; set: {', '.join(sorted(have)) or 'none'}"
        )
    return {k: v for k, v in have.items() if k not in wanted}


def thresholds_event(
    model: str, values: Mapping[str, float], set_by: str, reason: str, now_ms: int
) -> dict[str, Any]:
    """The ``Thresholds`` record of a model's overrides (compacted by model version); its id is
    derived from what it sets and when, so a retried write is the same event."""
    return {
        "event_id": stable_id(
            "thresholds", model, json.dumps(dict(values), sort_keys=True), now_ms
        ),
        "event_time": now_ms,
        "model_version": model,
        "values": dict(values),
        "set_by": set_by,
        "reason": reason,
    }
