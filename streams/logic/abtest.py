"""A/B experiment tallies and their analysis.

Tallies are plain mergeable data per (experiment, variant). The analysis runs per window or on
request (scipy costs milliseconds): chi-squared for proportions (satisfaction, lead capture),
Welch's t from the running mean/variance (latency, confidence), a sample-ratio-mismatch check,
the chatbot seed's decision score (satisfaction 3, lead capture 2, latency 1, confidence 1), the
dispatch seed's recommendation bands on confidence improvement, and an always-valid mSPRT
p-value so looking at the dashboard every minute does not inflate false positives.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scipy import stats

from streams.logic.cluster import ClusterSums
from streams.logic.running import RunningStats

CONTROL, TREATMENT = "control", "treatment"
WEIGHTS = {"satisfaction": 3, "lead_capture": 2, "latency": 1, "confidence": 1}
# The LLM judge's score is reported per arm with the same analysis but does not vote: the seed's
# decision weights are the seed's, and a judge earns a say once calibrated against users.
REPORTED = {"judge_score": 0}
# The session-level analysis: each arm's sessions are hashed into a fixed number of buckets and
# every metric's total and count is kept per bucket. A session always lands in the same bucket,
# so buckets are clusters of whole sessions, independent of each other: their totals give the
# cluster-robust (delta-method) variance of a ratio metric with no per-session state, exact
# under replay like any other sum in the arm's partial (streams.logic.cluster).
BUCKETS = 64
CLUSTERED = ("sat", "lead", "lat", "conf", "judge")
METRIC_OF = {
    "sat": "satisfaction",
    "lead": "lead_capture",
    "lat": "latency",
    "conf": "confidence",
    "judge": "judge_score",
}
# Non-empty buckets per arm before the session-level tests are used (the delta method is
# asymptotic in the number of clusters).
MIN_CLUSTERS = 30


def bucket_of(session_id: str) -> int:
    return zlib.crc32(session_id.encode()) % BUCKETS


def turn_contributions(turn: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(metric, value) that one turn adds to its session's bucket, one unit each."""
    out = [("lead", 1.0 if turn.get("lead_captured") else 0.0)]
    if turn.get("latency_ms") is not None:
        out.append(("lat", float(turn["latency_ms"])))
    if turn.get("confidence") is not None:
        out.append(("conf", float(turn["confidence"])))
    return out


class ArmTally:
    """One experiment arm: turns (lead capture, latency, confidence) and feedback (satisfaction).
    A predictive model's experiment fills it from predictions (``update_turn``: latency,
    confidence; no sessions nor leads) and outcomes (``update_outcome``: satisfied = a
    successful outcome)."""

    def __init__(self) -> None:
        self.n = 0
        self.sessions = 0  # sessions started (first turns): the unit sticky assignment splits
        self.leads = 0
        self.latency = RunningStats()
        self.confidence = RunningStats()
        self.feedback = 0
        self.satisfied = 0
        self.fallbacks = 0  # chat fallback answers, or predictions the rules answered
        self.judge = RunningStats()  # LLM-as-judge scores (0..1) of the arm's sampled turns
        # metric -> [totals per bucket, counts per bucket] (session-level analysis)
        self.buckets: dict[str, list[list[float]]] = {}

    def _add(self, session_id: Any, metric: str, value: float) -> None:
        cell = self.buckets.get(metric)
        if cell is None:
            cell = self.buckets[metric] = [[0.0] * BUCKETS, [0.0] * BUCKETS]
        b = bucket_of(str(session_id))
        cell[0][b] += value
        cell[1][b] += 1.0

    def clusters(self, metric: str) -> ClusterSums:
        """The metric's cluster sums over the non-empty session buckets."""
        cell = self.buckets.get(metric)
        return ClusterSums() if cell is None else ClusterSums.of(cell[0], cell[1])

    def update_turn(self, turn: Mapping[str, Any]) -> None:
        if turn.get("session_id"):
            for metric, value in turn_contributions(turn):
                self._add(turn["session_id"], metric, value)
        self.n += 1
        self.sessions += turn.get("turn_index") == 0
        self.leads += bool(turn.get("lead_captured"))
        self.fallbacks += bool(turn.get("is_fallback") or turn.get("fallback_used"))
        if turn.get("latency_ms") is not None:
            self.latency.update(turn["latency_ms"])
        if turn.get("confidence") is not None:
            self.confidence.update(turn["confidence"])

    def update_feedback(self, fb: Mapping[str, Any]) -> None:
        self.feedback += 1
        ok = is_satisfied(fb)
        self.satisfied += ok
        if fb.get("session_id"):
            self._add(fb["session_id"], "sat", 1.0 if ok else 0.0)

    def update_judge(self, score: Mapping[str, Any]) -> None:
        """A judge score of one of the arm's turns (scored ones only: an unparseable answer says
        nothing about the arm)."""
        if score.get("status") != "ok" or score.get("score") is None:
            return
        self.judge.update(float(score["score"]))
        if score.get("session_id"):
            self._add(score["session_id"], "judge", float(score["score"]))

    def update_outcome(self, outcome: Mapping[str, Any]) -> None:
        """An outcome that says whether the prediction was right counts as rated feedback."""
        if outcome.get("success") is None:
            return
        self.feedback += 1
        self.satisfied += outcome["success"] is True

    def merge(self, other: ArmTally) -> ArmTally:
        self.n += other.n
        self.sessions += other.sessions
        self.leads += other.leads
        self.latency.merge(other.latency)
        self.confidence.merge(other.confidence)
        self.feedback += other.feedback
        self.satisfied += other.satisfied
        self.fallbacks += other.fallbacks
        self.judge.merge(other.judge)
        for m, (totals, counts) in other.buckets.items():
            mine = self.buckets.get(m)
            if mine is None:
                self.buckets[m] = [list(totals), list(counts)]
            else:
                mine[0] = [a + b for a, b in zip(mine[0], totals, strict=True)]
                mine[1] = [a + b for a, b in zip(mine[1], counts, strict=True)]
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "ses": self.sessions,
            "leads": self.leads,
            "lat": self.latency.to_dict(),
            "conf": self.confidence.to_dict(),
            "fb": self.feedback,
            "sat": self.satisfied,
            "fbk": self.fallbacks,
            "jdg": self.judge.to_dict(),
            "bk": self.buckets,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArmTally:
        a = cls()
        a.n, a.leads, a.feedback, a.satisfied = (
            int(d["n"]),
            int(d["leads"]),
            int(d["fb"]),
            int(d["sat"]),
        )
        a.sessions = int(d.get("ses", 0))
        a.fallbacks = int(d.get("fbk", 0))
        if d.get("jdg"):
            a.judge = RunningStats.from_dict(d["jdg"])
        a.buckets = {m: [list(t), list(c)] for m, (t, c) in (d.get("bk") or {}).items()}
        a.latency, a.confidence = (
            RunningStats.from_dict(d["lat"]),
            RunningStats.from_dict(d["conf"]),
        )
        return a

    def summary(self) -> dict[str, Any]:
        return {
            "turns": self.n,
            "sessions": self.sessions,
            "feedback": self.feedback,
            "satisfaction_rate": self.satisfied / self.feedback if self.feedback else None,
            "lead_capture_rate": self.leads / self.n if self.n else None,
            "latency_mean_ms": self.latency.mean if self.latency.n else None,
            "latency_std_ms": self.latency.std if self.latency.n > 1 else None,
            "confidence_mean": self.confidence.mean if self.confidence.n else None,
            "confidence_std": self.confidence.std if self.confidence.n > 1 else None,
            "fallback_rate": self.fallbacks / self.n if self.n else None,
            "judged": self.judge.n,
            "judge_score_mean": self.judge.mean if self.judge.n else None,
            "judge_score_std": self.judge.std if self.judge.n > 1 else None,
        }


def is_satisfied(fb: Mapping[str, Any]) -> bool:
    """The seed's satisfaction: rating >= 4, or thumbs up."""
    rating = fb.get("rating")
    return (rating is not None and rating >= 4) or fb.get("thumbs") == "UP"


# -- tests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult:
    metric: str
    control: float | None
    treatment: float | None
    statistic: float | None
    p_value: float | None
    significant: bool
    better: str | None  # control | treatment | None
    test: str
    # treatment - control, with its (1 - alpha) confidence interval (None when not computable)
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str = "turn"  # what counts as one observation: turn (or feedback), or session

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def chi_squared(metric: str, sa: int, na: int, sb: int, nb: int, alpha: float) -> TestResult:
    """2x2 chi-squared test of two proportions (no continuity correction), with the Wald interval
    of the difference of the proportions."""
    ra = sa / na if na else None
    rb = sb / nb if nb else None
    table = [[sa, na - sa], [sb, nb - sb]]
    if na == 0 or nb == 0 or sa + sb == 0 or sa + sb == na + nb:
        return TestResult(metric, ra, rb, None, None, False, None, "chi2")
    assert ra is not None and rb is not None
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    sig = bool(p < alpha)
    better = (TREATMENT if rb > ra else CONTROL) if sig else None
    diff = rb - ra
    half = float(stats.norm.ppf(1 - alpha / 2)) * math.sqrt(ra * (1 - ra) / na + rb * (1 - rb) / nb)
    return TestResult(
        metric, ra, rb, float(chi2), float(p), sig, better, "chi2", diff, diff - half, diff + half
    )


def welch(
    metric: str, a: RunningStats, b: RunningStats, alpha: float, lower_is_better: bool = False
) -> TestResult:
    """Welch's t-test from running summaries (unequal variances)."""
    if a.n < 2 or b.n < 2 or (a.variance == 0 and b.variance == 0):
        return TestResult(
            metric,
            a.mean if a.n else None,
            b.mean if b.n else None,
            None,
            None,
            False,
            None,
            "welch",
        )
    t, p = stats.ttest_ind_from_stats(a.mean, a.std, a.n, b.mean, b.std, b.n, equal_var=False)
    sig = bool(p < alpha)
    better = None
    if sig:
        treatment_higher = b.mean > a.mean
        better = TREATMENT if treatment_higher != lower_is_better else CONTROL
    # Interval of the difference with the Welch-Satterthwaite degrees of freedom.
    va, vb = a.variance / a.n, b.variance / b.n
    dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = float(stats.t.ppf(1 - alpha / 2, dof)) * math.sqrt(va + vb)
    diff = b.mean - a.mean
    return TestResult(
        metric,
        a.mean,
        b.mean,
        float(t),
        float(p),
        sig,
        better,
        "welch",
        diff,
        diff - half,
        diff + half,
    )


def cluster_test(
    metric: str,
    a: ClusterSums,
    b: ClusterSums,
    alpha: float,
    lower_is_better: bool = False,
    test: str = "z_session",
) -> TestResult:
    """Difference of two ratio metrics with session-level (delta-method) variances: a z test and
    its Wald interval. Proportions (satisfaction, lead capture) and means (latency, confidence)
    alike, since each is a ratio of session totals."""
    ra, rb = a.ratio, b.ratio
    va, vb = a.variance(), b.variance()
    if ra is None or rb is None or va is None or vb is None or va + vb <= 0:
        return TestResult(metric, ra, rb, None, None, False, None, test, unit="session")
    se = math.sqrt(va + vb)
    diff = rb - ra
    z = diff / se
    p = float(2 * stats.norm.sf(abs(z)))
    sig = p < alpha
    better = None
    if sig:
        better = TREATMENT if (diff > 0) != lower_is_better else CONTROL
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    return TestResult(
        metric, ra, rb, float(z), p, sig, better, test, diff, diff - half, diff + half, "session"
    )


def sample_ratio_mismatch(
    n_control: int, n_treatment: int, treatment_share: float, threshold: float = 0.001
) -> dict[str, Any]:
    """Chi-squared goodness of fit of the observed split against the planned one. A p-value below
    ``threshold`` means assignment or logging is broken and no result should be trusted."""
    total = n_control + n_treatment
    if total == 0 or not 0 < treatment_share < 1:
        return {
            "p_value": None,
            "mismatch": False,
            "observed_share": None,
            "planned_share": treatment_share,
        }
    chi2, p = stats.chisquare(
        [n_control, n_treatment], [total * (1 - treatment_share), total * treatment_share]
    )
    return {
        "statistic": float(chi2),
        "p_value": float(p),
        "mismatch": bool(p < threshold),
        "observed_share": n_treatment / total,
        "planned_share": treatment_share,
    }


def msprt_p_value(diff: float, variance: float, tau2: float) -> float:
    """One look of the mixture SPRT (normal mixture N(0, tau2) over the effect): 1 / Lambda_n.

    ``diff`` is the observed difference of means and ``variance`` its variance. The running
    minimum of these values over looks is an always-valid p-value (Johari et al., 2017).
    """
    if variance <= 0:
        return 1.0
    log_lambda = 0.5 * math.log(variance / (variance + tau2)) + tau2 * diff * diff / (
        2 * variance * (variance + tau2)
    )
    return 1.0 if log_lambda <= 0 else max(0.0, math.exp(-log_lambda))


def recommendation_band(control_conf: float | None, treatment_conf: float | None) -> dict[str, Any]:
    """The dispatch seed's bands on confidence improvement of treatment over control."""
    if not control_conf or treatment_conf is None:
        return {"improvement": None, "recommendation": "collect_more_data"}
    imp = (treatment_conf - control_conf) / control_conf
    if imp > 0.10:
        rec = "gradual_rollout"
    elif imp >= 0.05:
        rec = "continue_testing"
    elif imp >= 0:
        rec = "collect_more_data"
    else:
        rec = "keep_control"
    return {"improvement": imp, "recommendation": rec}


def analyze(
    control: ArmTally,
    treatment: ArmTally,
    *,
    traffic_split: float = 50.0,
    min_samples: int = 100,
    alpha: float = 0.05,
    sequential_state: dict[str, float] | None = None,
    tau: Mapping[str, float] | None = None,
    srm_since: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Full analysis of one experiment. ``sequential_state`` (metric -> running min p) is updated
    in place so the always-valid p-values stay monotone across looks; persist it with the tallies.

    The decision uses session-level tests (the unit of assignment, :func:`cluster_test`) for each
    metric once both arms have ``MIN_CLUSTERS`` sessions of it; the turn-level chi-squared and
    Welch tests are reported next to them (``per_turn``) and decide only before that."""
    per_turn = [
        chi_squared(
            "satisfaction",
            control.satisfied,
            control.feedback,
            treatment.satisfied,
            treatment.feedback,
            alpha,
        ),
        chi_squared("lead_capture", control.leads, control.n, treatment.leads, treatment.n, alpha),
        welch("latency", control.latency, treatment.latency, alpha, lower_is_better=True),
        welch("confidence", control.confidence, treatment.confidence, alpha),
        welch("judge_score", control.judge, treatment.judge, alpha),
    ]
    tests = []
    clusters = {m: (control.clusters(m), treatment.clusters(m)) for m in CLUSTERED}
    for t, m in zip(per_turn, CLUSTERED, strict=True):
        ca, cb = clusters[m]
        if min(ca.k, cb.k) >= MIN_CLUSTERS:
            tests.append(cluster_test(t.metric, ca, cb, alpha, lower_is_better=m == "lat"))
        else:
            tests.append(t)
    # Always-valid p-values for the same four comparisons.
    tau = {
        "satisfaction": 0.05,
        "lead_capture": 0.02,
        "latency": 100.0,
        "confidence": 0.02,
        "judge_score": 0.05,
        **(tau or {}),
    }
    state = sequential_state if sequential_state is not None else {}
    sequential: dict[str, Any] = {}
    looks = {
        "satisfaction": _prop(
            control.satisfied, control.feedback, treatment.satisfied, treatment.feedback
        ),
        "lead_capture": _prop(control.leads, control.n, treatment.leads, treatment.n),
        "latency": _means(control.latency, treatment.latency),
        "confidence": _means(control.confidence, treatment.confidence),
        "judge_score": _means(control.judge, treatment.judge),
    }
    for m, name in METRIC_OF.items():  # at the session level once there are enough sessions
        ca, cb = clusters[m]
        va_, vb_ = ca.variance(), cb.variance()
        if min(ca.k, cb.k) >= MIN_CLUSTERS and va_ is not None and vb_ is not None:
            looks[name] = (cb.ratio - ca.ratio, va_ + vb_)  # type: ignore[operator]
    for name, (da, va) in looks.items():
        if da is None:
            sequential[name] = {
                "p_value": state.get(name, 1.0),
                "significant": state.get(name, 1.0) < alpha,
            }
            continue
        p = min(state.get(name, 1.0), msprt_p_value(da, va, tau[name] ** 2))
        state[name] = p
        sequential[name] = {"p_value": p, "significant": p < alpha}

    enough = min(control.n, treatment.n) >= min_samples
    scores = {CONTROL: 0, TREATMENT: 0}
    for t in tests:
        if t.significant and t.better:
            scores[t.better] += WEIGHTS.get(t.metric, 0)
    if not enough:
        decision = "insufficient_data"
    elif scores[TREATMENT] > scores[CONTROL]:
        decision = TREATMENT
    elif scores[CONTROL] > scores[TREATMENT]:
        decision = CONTROL
    else:
        decision = "no_significant_difference"
    # Assignment is per session (sticky) in the chatbot: turns of one session are not independent
    # draws, so the split is checked on sessions once there are enough of them, else on turns.
    if srm_since is not None:
        # A gradual rollout changed the split: only the samples since its step began were drawn
        # at the split in force (the earlier steps were checked at theirs).
        srm = sample_ratio_mismatch(
            control.n - srm_since[0], treatment.n - srm_since[1], traffic_split / 100.0
        )
        srm["unit"] = "turns since the rollout step began"
    elif control.sessions + treatment.sessions >= min_samples:
        srm = sample_ratio_mismatch(control.sessions, treatment.sessions, traffic_split / 100.0)
        srm["unit"] = "sessions"
    else:
        srm = sample_ratio_mismatch(control.n, treatment.n, traffic_split / 100.0)
        srm["unit"] = "turns"
    if srm["mismatch"]:
        decision = "invalid_sample_ratio_mismatch"
    return {
        "control": control.summary(),
        "treatment": treatment.summary(),
        "tests": [t.to_dict() for t in tests],
        "per_turn": [t.to_dict() for t in per_turn],
        "sequential": sequential,
        "srm": srm,
        "scores": scores,
        "weights": WEIGHTS,
        "min_samples": min_samples,
        "enough_samples": enough,
        "decision": decision,
        "recommendation": recommendation_band(
            control.summary()["confidence_mean"], treatment.summary()["confidence_mean"]
        ),
    }


def _prop(sa: int, na: int, sb: int, nb: int) -> tuple[float | None, float]:
    if na < 2 or nb < 2:
        return None, 0.0
    pa, pb = sa / na, sb / nb
    pooled = (sa + sb) / (na + nb)
    return pb - pa, pooled * (1 - pooled) * (1 / na + 1 / nb)


def _means(a: RunningStats, b: RunningStats) -> tuple[float | None, float]:
    if a.n < 2 or b.n < 2:
        return None, 0.0
    return b.mean - a.mean, a.variance / a.n + b.variance / b.n
