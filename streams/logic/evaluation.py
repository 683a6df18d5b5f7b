"""What stage 2 does when a group's window closes, as a pure function of plain data: freeze a
baseline if none exists, compare the window with the baseline and the previous period, open or
resolve alerts, and check the retraining criteria. Outputs are ready-to-send event dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.ids import stable_id
from streams.logic.abtest import analyze
from streams.logic.alert_rules import drift_requests, notice_request, rule_requests
from streams.logic.alerts import AlertThresholds
from streams.logic.drift import (
    JUDGED_QUALITY_DROP,
    SEMANTIC_DRIFT,
    SIGNAL_THRESHOLD,
    DriftThresholds,
    SignalResult,
    evaluate,
)
from streams.logic.features import compare_with_training
from streams.logic.feedback import FeedbackTally
from streams.logic.judge import JudgeTally, judged_quality
from streams.logic.partials import (
    AB_FEEDBACK,
    AB_JUDGE,
    AB_OUTCOMES,
    AB_PREDICTIONS,
    AB_TURNS,
    ALL_VARIANTS,
    FEEDBACK,
    FEEDBACK_BUCKETS,
    JUDGE_BUCKETS,
    OUTCOME_BUCKETS,
    OUTCOMES,
    PREDICTIONS,
    TURNS,
    merge_slots,
    state_of,
)
from streams.logic.predictions import OutcomeTally, PredictionStats
from streams.logic.retrain import RetrainPolicy, due_triggers
from streams.logic.semantic import sample_of, semantic_drift
from streams.logic.turns import TurnStats


@dataclass(frozen=True)
class EvalConfig:
    window_ms: int = 3_600_000  # 1 h windows ...
    hop_ms: int = 300_000  # ... every 5 min
    freeze_after: int = 1000  # turns of a new model version frozen into its baseline
    source_partitions: int = 0  # chat.turns partitions; 0 = unknown (freeze does not wait)
    drift: DriftThresholds = field(default_factory=DriftThresholds)
    alerts: AlertThresholds = field(default_factory=AlertThresholds)
    retrain: RetrainPolicy = field(default_factory=RetrainPolicy)
    # Where each threshold in force comes from (seed, settings, model), shown on the signals.
    threshold_sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def retention_ms(self) -> int:
        """How far back buckets are kept: a whole window plus two hops, so the window being
        evaluated and a late partition's bucket are both still there (stage 1 drops older
        buckets, stage 2 prunes them)."""
        return self.window_ms + 2 * self.hop_ms


def _buckets(partials: Iterable[Mapping[str, Any]], subject: str, kind: str = TURNS) -> list[int]:
    return sorted({p["b"] for p in partials if p["k"] == kind and p["s"] == subject})


def _count(partials: Iterable[Mapping[str, Any]], subject: str, kind: str = TURNS) -> int:
    """Events folded into a subject's partials, read from the stored counts (no merge)."""
    return sum(p["st"]["n"] for p in partials if p["k"] == kind and p["s"] == subject)


def closed_before(
    partials: Iterable[Mapping[str, Any]], subject: str, expected: int = 0, kind: str = TURNS
) -> int | None:
    """Buckets below this are complete in every source partition: each partition has already
    moved on to a later bucket (events arrive in order within a partition). None while fewer than
    ``expected`` partitions have been heard from (the silent ones may just be behind: in a
    backlog one partition can be folded hours of event time ahead of another)."""
    newest: dict[int, int] = {}
    for p in partials:
        if p["k"] == kind and p["s"] == subject:
            newest[p["p"]] = max(newest.get(p["p"], p["b"]), p["b"])
    if not newest or len(newest) < expected:
        return None
    return min(newest.values())


# A window is evaluated once every source partition has moved past its end; a partition that
# is silent or far behind holds it back at most this many hops (stage 1 keeps a turn bucket open
# for a window plus the same grace, so nothing it still accepts is past evaluation).
GRACE_HOPS = 2


def window_end(
    partials: Iterable[Mapping[str, Any]],
    subject: str,
    hop_ms: int,
    expected: int = 0,
    kind: str = TURNS,
) -> int | None:
    """The end of the newest window to evaluate: the newest bucket every source partition has
    reached (event time advances in order within a partition, so every bucket before it is
    complete), or, while fewer than ``expected`` partitions have been heard from or one lags, the
    newest bucket minus the grace."""
    buckets = _buckets(partials, subject, kind)
    if not buckets:
        return None
    fallback = buckets[-1] - GRACE_HOPS * hop_ms
    closed = closed_before(partials, subject, expected, kind)
    return fallback if closed is None else max(closed, fallback)


# Waiting for complete buckets stops once this many times the needed turns have been seen (a
# partition that never carries the model, or went silent, must not hold the baseline back).
FREEZE_PATIENCE = 4


def freeze_baseline(
    model: str,
    partials: list[Mapping[str, Any]],
    n: int,
    expected_partitions: int = 0,
    kind: str = TURNS,
) -> dict[str, Any] | None:
    """A Baseline from the earliest complete buckets of the model holding at least ``n`` turns
    (or predictions, with ``kind``) (complete, so a replay of the same time range over history
    gives the same numbers)."""
    subject = f"{model}|{ALL_VARIANTS}"
    buckets = _buckets(partials, subject, kind)
    limit = closed_before(partials, subject, expected_partitions, kind)
    if limit is None:
        if _count(partials, subject, kind) < FREEZE_PATIENCE * n or not buckets:
            return None
        limit = buckets[-1]
    acc = TurnStats()
    for b in buckets:
        if b >= limit:
            return None
        acc.merge(merge_slots(partials, kind, subject, b, b + 1))
        if acc.n >= n:
            return baseline_event(model, acc, "frozen", acc.last_ms or b)
    return None


def baseline_event(
    model: str, stats: TurnStats, source: str, now_ms: int, variant: str | None = None
) -> dict[str, Any]:
    s = stats.summary()
    return {
        "event_id": stable_id(
            "baseline", model, variant, source, s["window_start"], s["window_end"], s["sample_size"]
        ),
        "event_time": now_ms,
        "model_version": model,
        "variant": variant,
        "source": source,
        **s,
    }


# Windows evaluated at most per call: a worker catching up on a long backlog (or an outage)
# evaluates every hop's window in order, up to a day of 5-minute hops, and skips older ones.
MAX_CATCH_UP = 288


def windows_due(first_bucket: int, evaluated_end: int | None, end: int, hop_ms: int) -> list[int]:
    """Ends of the windows to evaluate now, oldest first: every hop after the last evaluated
    one (or after the first bucket) up to ``end``, so a window is evaluated once whatever size
    of batch brought its data. Windows wait for the model's baseline, then are caught up from
    the first one."""
    after = first_bucket if evaluated_end is None or evaluated_end < 0 else evaluated_end
    if end <= after:
        return []
    ends = list(range(end, after, -hop_ms))[:MAX_CATCH_UP]
    return ends[::-1]


def previous_period(
    periods: Mapping[str, Mapping[str, Any]], end: int, cfg: EvalConfig
) -> Mapping[str, Any] | None:
    """The summary of the period just before the window ending at ``end``: the window that ended
    where this one starts (or, when the window is not a whole number of hops, the last one
    before that), not the overlapping window one hop back, which differs by one hop's data."""
    start = end - cfg.window_ms
    ends = [int(k) for k in periods if start - cfg.hop_ms < int(k) <= start]
    return periods[str(max(ends))] if ends else None


# Summary parts other windows never read back: kept out of the group state's periods.
_BULKY = ("segments", "query_sample")


def _semantic(
    window: Any, baseline: Mapping[str, Any], cfg: EvalConfig, new_state: dict[str, Any], end: int
) -> SignalResult | None:
    """The window's sample of user queries against the baseline's (semantic drift); the newest
    window's 2-D picture is kept in the group state for the dashboard."""
    t = cfg.drift
    found = semantic_drift(
        sample_of(baseline),
        window.queries.queries(),
        alpha=t.semantic_alpha,
        min_samples=t.semantic_min_samples,
    )
    if found is None:
        return None
    new_state["semantic"] = found.view(end)
    m = found.mmd
    return SignalResult(
        SEMANTIC_DRIFT, m.mmd2, None, m.mmd2, m.threshold, found.breached, found.details
    )


def _judged_quality(
    model: str,
    partials: list[Mapping[str, Any]],
    baseline: Mapping[str, Any],
    new_state: dict[str, Any],
    cfg: EvalConfig,
    end: int,
) -> tuple[JudgeTally, SignalResult | None]:
    """The window's judge scores and, once the model has a judge baseline, the judged-quality
    signal. The judge baseline is the judge's scores of the turns in the model's baseline period,
    frozen into the group state the first time there are ``judge_min_samples`` of them (scores
    come seconds or minutes after their turns)."""
    t = cfg.drift
    window = merge_slots(partials, JUDGE_BUCKETS, model, end - cfg.window_ms, end)
    judge_base = new_state.get("judge_baseline")
    start, stop = baseline.get("window_start"), baseline.get("window_end")
    if judge_base is None and start is not None and stop is not None:
        first = start // cfg.hop_ms * cfg.hop_ms
        tally = merge_slots(partials, JUDGE_BUCKETS, model, first, stop + 1)
        source = "baseline period"
        if tally.ok < t.judge_min_samples:
            # Too few scores there (the judge started later, or its buckets are gone): the first
            # window of scores that has enough, once it is complete.
            judged = sorted(
                {p["b"] for p in partials if p["k"] == JUDGE_BUCKETS and p["s"] == model}
            )
            if judged and judged[0] + cfg.window_ms <= end:
                tally = merge_slots(
                    partials, JUDGE_BUCKETS, model, judged[0], judged[0] + cfg.window_ms
                )
                source = "first judged window"
        if tally.ok >= t.judge_min_samples:
            judge_base = {k: v for k, v in tally.summary().items() if k != "worst"}
            judge_base["source"] = source
            new_state["judge_baseline"] = judge_base
    measured = judged_quality(window, judge_base, t.judge_drop, t.judge_min_samples)
    if measured is None:
        return window, None
    now, base, change, breached, details = measured
    return window, SignalResult(
        JUDGED_QUALITY_DROP, now, base, change, -t.judge_drop, breached, details
    )


def _evaluate_window(
    model: str,
    partials: list[Mapping[str, Any]],
    baseline: Mapping[str, Any],
    new_state: dict[str, Any],
    cfg: EvalConfig,
    kind: str,
    end: int,
    out: dict[str, Any],
    training: Mapping[str, Any] | None = None,
) -> None:
    """The window ``[end - window, end)``: its signals against the baseline and the previous
    period (:func:`previous_period`), the alerts they open or resolve; ``new_state`` moves on
    to it and keeps its summary for the windows that will compare with it."""
    subject = f"{model}|{ALL_VARIANTS}"
    window = merge_slots(partials, kind, subject, end - cfg.window_ms, end)
    summary = window.summary()
    summary.pop("query_sample", None)  # the signal reads the sample itself; views need not
    accuracy = None
    if kind == PREDICTIONS:
        # Outcomes known by now whose time falls in the window; accuracy from enough of them.
        judged = merge_slots(partials, OUTCOME_BUCKETS, model, end - cfg.window_ms, end)
        summary["outcomes"] = judged.summary()
        if judged.judged >= cfg.drift.min_samples:
            accuracy = judged.accuracy
        summary["accuracy"] = accuracy
    out["summary"] = summary
    if window.n:
        results = evaluate(
            window,
            baseline,
            cfg.drift,
            previous=previous_period(new_state.get("periods", {}), end, cfg),
            accuracy=accuracy,
        )
        if kind == TURNS:
            judged = _judged_quality(model, partials, baseline, new_state, cfg, end)
            summary["judge"] = judged[0].summary()
            if judged[1] is not None:
                results.append(judged[1])
            semantic = _semantic(window, baseline, cfg, new_state, end)
            if semantic is not None:
                results.append(semantic)
        against_training = []
        if training and isinstance(window, PredictionStats):
            against_training = compare_with_training(window, training, cfg.drift)
            summary["training"] = {r.signal: round(r.value, 6) for r in against_training}
        for r in [*results, *against_training]:
            detector = "training" if r in against_training else "window"
            threshold_name = r.details.get("threshold_name") or SIGNAL_THRESHOLD.get(r.signal, "")
            out["signals"].append(
                {
                    "event_id": stable_id("signal", model, r.signal, end),
                    "event_time": end,
                    "model_version": model,
                    "variant": None,
                    "signal": r.signal,
                    "detector": detector,
                    "value": float(r.value),
                    "baseline": None if r.baseline is None else float(r.baseline),
                    "change": float(r.change),
                    "threshold": float(r.threshold),
                    "breached": r.breached,
                    "window_start": end - cfg.window_ms,
                    "window_end": end,
                    "sample_size": window.n,
                    "details": {
                        **r.details,
                        "low_confidence_rate": f"{summary['metrics']['low_confidence_rate']:.4f}",
                        "threshold_name": threshold_name,
                        "threshold_source": cfg.threshold_sources.get(threshold_name, "seed"),
                        "min_samples": str(cfg.drift.min_samples),
                    },
                }
            )
        # Alert requests: the owner of each dedup key decides what is opened or resolved.
        out["alerts"].extend(drift_requests(model, [*results, *against_training], end, cfg.alerts))
        out["alerts"].extend(
            rule_requests(
                model,
                summary,
                baseline,
                end,
                cfg.alerts,
                predictive=kind == PREDICTIONS,
                min_samples=cfg.drift.min_samples,
                breached=[r.signal for r in results if r.breached],
            )
        )
    periods = {
        k: v
        for k, v in new_state.get("periods", {}).items()
        if int(k) > end - cfg.window_ms - cfg.hop_ms  # what a later window may still compare with
    }
    if window.n >= cfg.drift.min_samples:
        periods[str(end)] = {k: v for k, v in summary.items() if k not in _BULKY}
    new_state["periods"] = periods
    new_state.pop("prev", None)  # state written before "periods" replaced it
    new_state.pop("alerts", None)  # per-model alert state before the alert owner existed
    new_state["evaluated_end"] = end


def evaluate_model(
    model: str,
    partials: list[Mapping[str, Any]],
    baseline: Mapping[str, Any] | None,
    state: Mapping[str, Any],
    cfg: EvalConfig,
    evaluation_accuracy: float | None = None,
    trained_at_ms: int | None = None,
    kind: str = TURNS,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate the newest complete window (:func:`window_end`), if not done yet.
    ``evaluation_accuracy`` (newest published evaluation) and ``trained_at_ms`` (model registry)
    feed the retrain criteria; without a registry entry a model's age counts from its first turn.

    ``kind`` TURNS: a chat model (turn windows; feedback: new examples and online accuracy =
    share of the newest window's feedback that does not report a ``wrong_intent``). PREDICTIONS: a predictive model
    (prediction windows; outcomes: accuracy = share of successful outcomes, no feedback count);
    with ``training`` (the version's registered training metrics) each window is also compared
    with them, feature by feature (detector ``training``)."""
    out: dict[str, Any] = {
        "signals": [],
        "alerts": [],
        "baseline": None,
        "triggers": [],
        "summary": None,
    }
    new_state = dict(state)
    subject = f"{model}|{ALL_VARIANTS}"
    buckets = _buckets(partials, subject, kind)
    if not buckets:
        out["state"] = new_state
        return out
    new_state.setdefault("first_seen", buckets[0])
    if trained_at_ms is not None:
        new_state["trained_at"] = int(trained_at_ms)
    if baseline is None:
        frozen = freeze_baseline(model, partials, cfg.freeze_after, cfg.source_partitions, kind)
        if frozen is not None:
            out["baseline"] = frozen
            baseline = frozen
            out["alerts"].append(
                notice_request(
                    f"baseline:{model}",
                    f"Baseline frozen for {model} ({frozen['sample_size']} events)",
                    frozen["event_time"],
                    message=f"from {frozen['window_start']} to {frozen['window_end']}; drift "
                    "is measured against it from now on",
                    model_version=model,
                    thresholds=cfg.alerts,
                )
            )
    end = window_end(partials, subject, cfg.hop_ms, cfg.source_partitions, kind)
    assert end is not None  # there are buckets
    if baseline is None:  # nothing to compare with yet: show the newest window, move on later
        if end > buckets[0]:
            summary = merge_slots(partials, kind, subject, end - cfg.window_ms, end).summary()
            summary.pop("query_sample", None)
            out["summary"] = summary
            # The seed's absolute rules (fallback rate, minimum confidence) need no baseline: a
            # model failing from its first minutes is alerted too, once per window end (the
            # same window evaluated again after the freeze sends the same request ids).
            if end > new_state.get("rules_end", -1):
                new_state["rules_end"] = end
                out["alerts"].extend(
                    rule_requests(
                        model,
                        summary,
                        None,
                        end,
                        cfg.alerts,
                        predictive=kind == PREDICTIONS,
                        min_samples=cfg.drift.min_samples,
                    )
                )
    else:
        for e in windows_due(buckets[0], new_state.get("evaluated_end"), end, cfg.hop_ms):
            _evaluate_window(model, partials, baseline, new_state, cfg, kind, e, out, training)

    if kind == PREDICTIONS:
        outcomes = merge_slots(partials, OUTCOMES, model)
        assert isinstance(outcomes, OutcomeTally)
        # Accuracy from outcomes: judged outcomes play the turns, failed ones the wrong answers.
        new_feedback, judged, wrong = 0, outcomes.judged, outcomes.failure
        out["outcomes"] = outcomes.summary()
    else:
        fb = merge_slots(partials, FEEDBACK, model)
        assert isinstance(fb, FeedbackTally)
        # Online accuracy over one period for numerator and denominator: the feedback whose time
        # falls in the newest window, and the share of it that does not report a wrong intent.
        recent = merge_slots(partials, FEEDBACK_BUCKETS, model, end - cfg.window_ms, end)
        assert isinstance(recent, FeedbackTally)
        new_feedback, judged = fb.since_training, recent.n
        wrong = recent.categories.get("wrong_intent", 0)
        out["feedback"] = fb.summary()
        out["feedback"]["accuracy_window"] = {
            "window_start": end - cfg.window_ms,
            "window_end": end,
            "feedback": judged,
            "wrong_intent": wrong,
        }
    triggers = due_triggers(
        model_version=model,
        now_ms=buckets[-1],  # the newest data seen, not the (possibly older) window end
        trained_at_ms=new_state.get("trained_at", new_state["first_seen"]),
        new_feedback=new_feedback,
        turns=judged,
        wrong_intent_feedback=wrong,
        evaluation_accuracy=evaluation_accuracy,
        already_fired=set(new_state.get("fired", [])),
        policy=cfg.retrain,
    )
    for t in triggers:
        out["triggers"].append(
            {"event_id": stable_id("trigger", t["trigger_id"]), "event_time": buckets[-1], **t}
        )
    new_state["fired"] = sorted(
        set(new_state.get("fired", [])) | {t["trigger_id"] for t in triggers}
    )
    out["state"] = new_state
    return out


def evaluate_experiment(
    experiment: Mapping[str, Any], partials: list[Mapping[str, Any]], seq_state: dict[str, float]
) -> dict[str, Any]:
    """A/B analysis of one experiment from its arm partials (turn and feedback halves)."""
    exp_id = experiment["experiment_id"]
    arms = {}
    for variant in ("control", "treatment"):
        # A chat experiment has turn and feedback halves; a predictive model's, prediction and
        # outcome halves (a successful outcome counts as satisfied feedback).
        subject = f"{exp_id}|{variant}"
        arm = merge_slots(partials, AB_TURNS, subject).merge(
            merge_slots(partials, AB_PREDICTIONS, subject)
        )
        fb = merge_slots(partials, AB_FEEDBACK, subject).merge(
            merge_slots(partials, AB_OUTCOMES, subject)
        )
        arm.feedback, arm.satisfied = fb.feedback, fb.satisfied
        if "sat" in fb.buckets:  # satisfaction per session bucket, for the session-level test
            arm.buckets["sat"] = fb.buckets["sat"]
        judged = merge_slots(partials, AB_JUDGE, subject)
        arm.judge = judged.judge
        if "judge" in judged.buckets:
            arm.buckets["judge"] = judged.buckets["judge"]
        arms[variant] = arm
    base = (experiment.get("metadata") or {}).get("rollout_base")
    result = analyze(
        arms["control"],
        arms["treatment"],
        traffic_split=experiment.get("traffic_split", 50.0),
        min_samples=experiment.get("min_samples", 100),
        alpha=experiment.get("alpha", 0.05),
        sequential_state=seq_state,
        srm_since=tuple(int(x) for x in base.split(",")) if base else None,  # type: ignore[arg-type]
    )
    result["experiment"] = dict(experiment)
    return result


__all__ = [
    "EvalConfig",
    "baseline_event",
    "evaluate_experiment",
    "evaluate_model",
    "freeze_baseline",
    "stable_id",
    "window_end",
    "state_of",
]
