"""Model registry: versions move candidate -> promoted -> retired, one ``ModelVersion`` record per
change on the compacted ``model-registry`` topic (its latest record per version is the state, so
the registry survives restarts and is the same for every reader).

``Registry`` is pure (current states in, events out); ``load_registry``/``publish`` do the Kafka
part. Promotion needs a passing evaluation of the version (``continuum evaluate``) or a concluded
A/B experiment that it won, retires the version it replaces, and sets the baseline drift is
measured against (the version's own when one exists, else inherited from the version it
replaces, published under the new version's name)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from continuum.settings import Settings

CANDIDATE, PROMOTED, RETIRED = "CANDIDATE", "PROMOTED", "RETIRED"
ALLOWED: dict[str | None, frozenset[str]] = {
    None: frozenset({CANDIDATE}),
    CANDIDATE: frozenset({PROMOTED, RETIRED}),
    PROMOTED: frozenset({RETIRED}),
    RETIRED: frozenset(),
}


class RegistryError(ValueError):
    """A refused registry change; the message says why and what would allow it."""


def _event(
    version: str, state: str, previous: Mapping[str, Any] | None, now_ms: int, **fields: Any
) -> dict[str, Any]:
    base = dict(previous or {})
    base.update(
        {
            "event_id": str(uuid.uuid4()),
            "event_time": now_ms,
            "model_version": version,
            "state": state,
            "previous_state": previous["state"] if previous else None,
            "reason": "",
        }
    )
    for key in (
        "trained_at",
        "artifact_uri",
        "dataset",
        "evaluation_id",
        "experiment_id",
        "baseline_model_version",
    ):
        base.setdefault(key, None)
    base.setdefault("metadata", {})
    base.update(fields)
    return base


class Registry:
    def __init__(self, versions: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.versions: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (versions or {}).items()}

    def state(self, version: str) -> str | None:
        rec = self.versions.get(version)
        return rec["state"] if rec else None

    def promoted(self) -> str | None:
        live = [v for v in self.versions.values() if v["state"] == PROMOTED]
        return max(live, key=lambda v: v["event_time"])["model_version"] if live else None

    def _check(self, version: str, target: str) -> None:
        current = self.state(version)
        if target not in ALLOWED[current]:
            if current is None:
                raise RegistryError(
                    f"{version} is not registered; register it first (`continuum models register {version}`)"
                )
            allowed = ", ".join(sorted(ALLOWED[current])) or "nothing (retired is final)"
            raise RegistryError(
                f"{version} is {current}: cannot become {target}; allowed: {allowed}"
            )

    def _apply(self, event: dict[str, Any]) -> dict[str, Any]:
        self.versions[event["model_version"]] = event
        return event

    def register(
        self,
        version: str,
        now_ms: int,
        *,
        trained_at: int | None = None,
        artifact_uri: str | None = None,
        dataset: str | None = None,
        reason: str = "registered",
    ) -> dict[str, Any]:
        self._check(version, CANDIDATE)
        return self._apply(
            _event(
                version,
                CANDIDATE,
                None,
                now_ms,
                trained_at=trained_at,
                artifact_uri=artifact_uri,
                dataset=dataset,
                reason=reason,
            )
        )

    def promote(
        self,
        version: str,
        now_ms: int,
        *,
        evaluations: Iterable[Mapping[str, Any]] = (),
        experiments: Iterable[Mapping[str, Any]] = (),
        baselines: Mapping[str, Mapping[str, Any]] | None = None,
        reason: str = "",
    ) -> list[dict[str, Any]]:
        """The ModelVersion events (the promotion, then the retirement of the version it
        replaces). Refused without a passing evaluation of ``version`` (its newest one counts) or
        a concluded experiment whose winner it is."""
        self._check(version, PROMOTED)
        evals = sorted(
            (e for e in evaluations if e["model_version"] == version), key=lambda e: e["event_time"]
        )
        won = [
            x for x in experiments if x.get("status") == "CONCLUDED" and x.get("winner") == version
        ]
        latest = evals[-1] if evals else None
        if latest is not None and latest["passed"]:
            why = {
                "evaluation_id": latest["evaluation_id"],
                "reason": reason or f"passed evaluation {latest['evaluation_id']}",
            }
        elif won:
            exp = max(won, key=lambda x: x["event_time"])
            why = {
                "experiment_id": exp["experiment_id"],
                "reason": reason or f"won A/B experiment {exp['experiment_id']}",
            }
        else:
            detail = (
                f"its latest evaluation {latest['evaluation_id']} failed ({', '.join(latest['failed_checks']) or 'unknown'})"
                if latest is not None
                else "it has no evaluation"
            )
            raise RegistryError(
                f"{version} cannot be promoted: {detail} and it won no concluded A/B experiment; "
                f"run `continuum evaluate --model {version} ...` or conclude an experiment with it as winner"
            )
        replaced = self.promoted()
        has_own = bool(baselines and version in baselines)
        baseline = version if has_own or replaced is None else replaced
        events = [
            self._apply(
                _event(
                    version,
                    PROMOTED,
                    self.versions[version],
                    now_ms,
                    baseline_model_version=baseline,
                    **why,
                )
            )
        ]
        if replaced is not None and replaced != version:
            events.append(
                self._apply(
                    _event(
                        replaced,
                        RETIRED,
                        self.versions[replaced],
                        now_ms,
                        reason=f"replaced by {version}",
                    )
                )
            )
        return events

    def retire(
        self, version: str, now_ms: int, reason: str = "retired by an operator"
    ) -> dict[str, Any]:
        self._check(version, RETIRED)
        return self._apply(_event(version, RETIRED, self.versions[version], now_ms, reason=reason))


def inherited_baseline(
    promotion: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]], now_ms: int
) -> dict[str, Any] | None:
    """The Baseline to publish for a promoted version that has none: a copy of the one it is to
    be measured against, under its own name (None when it has its own or there is none)."""
    version, source = promotion["model_version"], promotion.get("baseline_model_version")
    if not source or source == version or source not in baselines:
        return None
    return {
        **baselines[source],
        "event_id": str(uuid.uuid4()),
        "event_time": now_ms,
        "model_version": version,
        "source": f"registry:inherited from {source}",
    }


def load_registry(settings: Settings) -> Registry:
    from jobs.topicread import latest_by

    return Registry(latest_by(settings, "model-registry", "model_version"))
