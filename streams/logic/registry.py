"""Model registry: versions move candidate -> promoted -> retired, one ``ModelVersion`` record per
change on the compacted ``model-registry`` topic (its latest record per version is the state, so
the registry survives restarts and is the same for every reader).

``Registry`` is pure (current states in, events out); ``jobs.registry`` does the Kafka part for
the CLI, and the streams worker uses the same class for automatic rollback.

Promotion gates: a passing evaluation of the version (``continuum evaluate``) in which every one
of the seed's dimensions was checked (a partial one only with ``allow_partial``, recorded in the
reason), or a concluded A/B experiment whose winning arm serves the version. Promotion retires
the version it replaces, remembers it (``metadata.replaced``) and sets the baseline drift is
measured against (the version's own when one exists, else inherited from the version it
replaces, published under the new version's name).

Rollback: a version promoted less than the probation period ago that raises a CRITICAL alert is
retired and the version it replaced is promoted again; the event ids derive from the promotion
and the alert, so a rollback decided twice (two alerts, two workers) is the same events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from schemas.ids import stable_id

CANDIDATE, PROMOTED, RETIRED = "CANDIDATE", "PROMOTED", "RETIRED"
ALLOWED: dict[str | None, frozenset[str]] = {
    None: frozenset({CANDIDATE}),
    CANDIDATE: frozenset({PROMOTED, RETIRED}),
    PROMOTED: frozenset({RETIRED}),
    RETIRED: frozenset(),
}


# The seed's evaluation dimensions: a pass means every one of them was checked and passed.
DIMENSIONS = {
    "intent_accuracy": "intent",
    "latency_p95_ms": "latency",
    "safety_violations": "safety",
    "naturalness_score": "naturalness",
    "lead_capture_rate": "lead_capture",
}


def skipped_dimensions(evaluation: Mapping[str, Any]) -> list[str]:
    """The seed dimensions an evaluation did not check."""
    out = [name for field, name in DIMENSIONS.items() if evaluation.get(field) is None]
    if "safety" not in out and not evaluation.get("safety_prompts"):
        out.append("safety")
    return out


def winning_version(experiment: Mapping[str, Any]) -> str | None:
    """The model version a concluded experiment's winner stands for: the winning arm's version
    (``control``/``treatment``), or the winner itself when it names a version."""
    winner = experiment.get("winner")
    if winner == "control":
        return experiment.get("control_version")
    if winner == "treatment":
        return experiment.get("treatment_version")
    return winner


class RegistryError(ValueError):
    """A refused registry change; the message says why and what would allow it."""


def _event(
    version: str, state: str, previous: Mapping[str, Any] | None, now_ms: int, **fields: Any
) -> dict[str, Any]:
    base = dict(previous or {})
    base.update(
        {
            "event_id": stable_id("registry", version, state, now_ms),
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
        "training_metrics",
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
        training_metrics: str | None = None,
    ) -> dict[str, Any]:
        """``training_metrics``: the version's training profile as JSON (see ModelVersion)."""
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
                training_metrics=training_metrics,
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
        allow_partial: bool = False,
    ) -> list[dict[str, Any]]:
        """The ModelVersion events (the promotion, then the retirement of the version it
        replaces). Refused without a passing evaluation of ``version`` (its newest one counts) or
        a concluded experiment whose winner it is."""
        self._check(version, PROMOTED)
        evals = sorted(
            (e for e in evaluations if e["model_version"] == version), key=lambda e: e["event_time"]
        )
        won = [
            x
            for x in experiments
            if x.get("status") == "CONCLUDED" and winning_version(x) == version
        ]
        latest = evals[-1] if evals else None
        skipped = skipped_dimensions(latest) if latest is not None else []
        if latest is not None and latest["passed"] and (not skipped or allow_partial):
            partial = (
                f" (partial: {', '.join(skipped)} not evaluated; allowed explicitly)"
                if skipped
                else ""
            )
            why = {
                "evaluation_id": latest["evaluation_id"],
                "reason": (reason or f"passed evaluation {latest['evaluation_id']}") + partial,
            }
        elif won:
            exp = max(won, key=lambda x: x["event_time"])
            why = {
                "experiment_id": exp["experiment_id"],
                "reason": reason
                or f"won A/B experiment {exp['experiment_id']} ({exp.get('winner')} arm)",
            }
        else:
            if latest is not None and latest["passed"]:
                detail = (
                    f"its latest evaluation {latest['evaluation_id']} is partial "
                    f"({', '.join(skipped)} not evaluated; pass --allow-partial to accept it)"
                )
            elif latest is not None:
                detail = (
                    f"its latest evaluation {latest['evaluation_id']} failed "
                    f"({', '.join(latest['failed_checks']) or 'unknown'})"
                )
            else:
                detail = "it has no evaluation"
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
                    metadata={
                        **(self.versions[version].get("metadata") or {}),
                        "promoted_at": str(now_ms),
                        **({"replaced": replaced} if replaced and replaced != version else {}),
                    },
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

    def rollback(
        self, version: str, alert: Mapping[str, Any], now_ms: int, probation_ms: int
    ) -> list[dict[str, Any]]:
        """The events of an automatic rollback of ``version`` for a CRITICAL ``alert``: the
        version retired, the one it replaced promoted again. Empty when the version is not the
        promoted one, its probation is over, or it replaced nothing to go back to."""
        rec = self.versions.get(version)
        if rec is None or rec["state"] != PROMOTED or alert.get("severity") != "CRITICAL":
            return []
        meta = rec.get("metadata") or {}
        promoted_at = int(meta.get("promoted_at", rec["event_time"]))
        previous = meta.get("replaced")
        if now_ms - promoted_at > probation_ms or not previous or previous not in self.versions:
            return []
        why = (
            f"rolled back: CRITICAL {alert.get('alert_type')} within "
            f"{probation_ms / 3_600_000:g} h of promotion ({alert.get('title')})"
        )
        ident = ("rollback", version, promoted_at)
        retired = _event(
            version,
            RETIRED,
            rec,
            now_ms,
            reason=why,
            metadata={**meta, "rollback_alert": str(alert.get("alert_id")), "restored": previous},
        )
        retired["event_id"] = stable_id(*ident, "retired")
        back = _event(
            previous,
            PROMOTED,
            self.versions[previous],
            now_ms,
            reason=f"restored: {version} was {why}",
            baseline_model_version=self.versions[previous].get("baseline_model_version")
            or previous,
            metadata={
                **(self.versions[previous].get("metadata") or {}),
                "promoted_at": str(now_ms),
                "restored_from": version,
            },
        )
        back["event_id"] = stable_id(*ident, "restored")
        return [self._apply(retired), self._apply(back)]


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
        "event_id": stable_id("baseline", version, "inherited", source, now_ms),
        "event_time": now_ms,
        "model_version": version,
        "source": f"registry:inherited from {source}",
    }
