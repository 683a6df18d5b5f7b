"""Per-feature drift of a predictive model against its training data: PSI and the two-sample KS
test on numeric features, PSI and the chi-squared goodness-of-fit test on categorical ones (the
dispatch seed's "comparación vs métricas de entrenamiento", feature by feature).

A window's features are kept as plain mergeable data (:class:`FeatureProfile`): exact counts of
every categorical value (booleans and strings), and for numeric values a uniform sample of rows
that merges exactly — the ``SAMPLE_ROWS`` rows with the smallest hash of their prediction id
(a bottom-k sample: the union of two samples cut to the k smallest hashes is the sample of the
union, and a replay picks the same rows). Up to that many rows per bucket the window's numeric
values are all there, so PSI and KS equal scipy's on the raw values.

The reference is the training profile a model version is registered with (``training_metrics``
of its ``ModelVersion``, as the dispatch model server writes it): per feature, ``numeric`` with
the training quantile ``edges``, the ``shares`` of each bin and a ``sample`` of values, or
``categorical`` with the ``shares`` of each value.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from streams.logic.drift import DriftThresholds, SignalResult

if TYPE_CHECKING:
    from streams.logic.predictions import PredictionStats

# Numeric rows kept per bucket and partition, and per window once merged. PSI over ten training
# bins on n values reads about 9/n when nothing changed: 0.035 at 256, far under the threshold.
SAMPLE_ROWS = 256
PSI_FLOOR = 1e-4  # share given to an empty bin so PSI stays finite


def row_hash(prediction_id: str) -> int:
    """A uniform 48-bit number of the prediction id (the same on every replay)."""
    return int.from_bytes(hashlib.blake2b(prediction_id.encode(), digest_size=6).digest(), "big")


class FeatureProfile:
    """The features of a set of predictions, mergeable: categorical counts and a bottom-k sample
    of numeric rows."""

    def __init__(self, k: int = SAMPLE_ROWS) -> None:
        self.k = k
        self.categories: dict[str, dict[str, int]] = {}
        self.rows: list[tuple[int, dict[str, float]]] = []  # sorted by hash

    def update(self, prediction_id: str, features: Mapping[str, Any]) -> None:
        numeric: dict[str, float] = {}
        for name, v in features.items():
            if v is None:
                continue
            if isinstance(v, bool | str):
                counts = self.categories.setdefault(name, {})
                key = str(v).lower() if isinstance(v, bool) else v
                counts[key] = counts.get(key, 0) + 1
            elif isinstance(v, int | float) and math.isfinite(v):
                numeric[name] = float(v)
        if not numeric:
            return
        # One row into the sorted bottom-k (per prediction, in stage 1's fold: no re-sort).
        h = row_hash(prediction_id)
        if len(self.rows) >= self.k and h >= self.rows[-1][0]:
            return
        i = bisect.bisect_left(self.rows, h, key=lambda r: r[0])
        if i < len(self.rows) and self.rows[i][0] == h:
            return  # the same prediction again (a redelivery)
        self.rows.insert(i, (h, numeric))
        del self.rows[self.k :]

    def _keep(self, rows: list[tuple[int, dict[str, float]]]) -> None:
        merged = sorted([*self.rows, *rows], key=lambda r: r[0])
        out: list[tuple[int, dict[str, float]]] = []
        for r in merged:  # the same prediction counted twice (a redelivery) is one row
            if not out or out[-1][0] != r[0]:
                out.append(r)
        self.rows = out[: self.k]

    def merge(self, other: FeatureProfile) -> FeatureProfile:
        for name, counts in other.categories.items():
            mine = self.categories.setdefault(name, {})
            for v, c in counts.items():
                mine[v] = mine.get(v, 0) + c
        self._keep(other.rows)
        return self

    def values(self, name: str) -> list[float]:
        return [row[name] for _, row in self.rows if name in row]

    def to_dict(self) -> dict[str, Any]:
        """Column-wise (a changelog record per bucket stays small): hashes, then each numeric
        feature's values with null where a row lacks it."""
        names = sorted({n for _, row in self.rows for n in row})
        return {
            "k": self.k,
            "cat": {n: dict(c) for n, c in self.categories.items()},
            "h": [h for h, _ in self.rows],
            "num": {n: [row.get(n) for _, row in self.rows] for n in names},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> FeatureProfile:
        p = cls(int((d or {}).get("k", SAMPLE_ROWS)))
        if d:
            p.categories = {n: {v: int(c) for v, c in cs.items()} for n, cs in d["cat"].items()}
            cols = d["num"]
            p.rows = [
                (int(h), {n: float(col[i]) for n, col in cols.items() if col[i] is not None})
                for i, h in enumerate(d["h"])
            ]
        return p


def psi(expected: list[float], actual: list[float], floor: float = PSI_FLOOR) -> float:
    """Population stability index: sum of (a - e) ln(a / e) over bins (shares floored)."""
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def binned_shares(values: list[float], edges: list[float]) -> list[float]:
    """Shares of ``values`` in the bins ``(-inf, e0), [e0, e1), ..., [e_last, inf)`` — the
    training bins, as the model server computed them (numpy ``searchsorted``, side right)."""
    idx = np.searchsorted(np.asarray(edges, dtype=float), np.asarray(values), side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return [float(c) / max(1, len(values)) for c in counts]


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical
    psi: float
    test: str  # ks | chi2
    statistic: float
    p_value: float
    sample_size: int
    breached: bool
    details: dict[str, str] = field(default_factory=dict)


def feature_drift(
    window: FeatureProfile,
    reference: Mapping[str, Mapping[str, Any]],
    psi_threshold: float,
    min_samples: int,
) -> list[FeatureDrift]:
    """Every reference feature with at least ``min_samples`` values in the window (numeric
    values from the row sample; fewer than ``min_samples`` rows means no verdict for it).
    Breached when PSI reaches ``psi_threshold``; the test's statistic and p-value explain it."""
    out: list[FeatureDrift] = []
    for name in sorted(reference):
        ref = reference[name]
        if ref.get("type") == "numeric":
            values = window.values(name)
            if len(values) < min_samples:
                continue
            edges = list(ref["edges"])
            value = psi(list(ref["shares"]), binned_shares(values, edges))
            ks = stats.ks_2samp(values, list(ref["sample"]))
            statistic, p_value, test = float(ks.statistic), float(ks.pvalue), "ks"
            n = len(values)
        elif ref.get("type") == "categorical":
            counts = window.categories.get(name, {})
            n = sum(counts.values())
            if n < min_samples:
                continue
            cats = sorted(set(ref["shares"]) | set(counts))
            expected = [max(float(ref["shares"].get(c, 0.0)), PSI_FLOOR) for c in cats]
            total = sum(expected)
            observed = [counts.get(c, 0) for c in cats]
            value = psi(expected, [o / n for o in observed])
            chi = stats.chisquare(observed, [e / total * n for e in expected])
            statistic, p_value, test = float(chi.statistic), float(chi.pvalue), "chi2"
        else:
            continue
        out.append(
            FeatureDrift(
                feature=name,
                kind=str(ref["type"]),
                psi=value,
                test=test,
                statistic=statistic,
                p_value=p_value,
                sample_size=n,
                breached=value >= psi_threshold,
            )
        )
    return out


FEATURE_DRIFT = "feature_drift"  # signal name prefix: feature_drift:<feature>
CONFIDENCE_VS_TRAINING = "confidence_vs_training"


def compare_with_training(
    window: PredictionStats,
    training: Mapping[str, Any],
    thresholds: DriftThresholds,
) -> list[SignalResult]:
    """A window against the model's training metrics: each feature's drift (PSI, with the KS or
    chi-squared test in the details) and the mean confidence against the training one (the
    seed's drift threshold, relative)."""
    out: list[SignalResult] = []
    for d in feature_drift(
        window.features,
        training.get("feature_distributions") or {},
        thresholds.feature_psi,
        thresholds.min_samples,
    ):
        out.append(
            SignalResult(
                signal=f"{FEATURE_DRIFT}:{d.feature}",
                value=d.psi,
                baseline=0.0,
                change=d.psi,
                threshold=thresholds.feature_psi,
                breached=d.breached,
                details={
                    "feature": d.feature,
                    "feature_type": d.kind,
                    "test": d.test,
                    "statistic": f"{d.statistic:.6g}",
                    "p_value": f"{d.p_value:.6g}",
                    "feature_sample": str(d.sample_size),
                    "threshold_name": "feature_psi",
                },
            )
        )
    ref_conf = training.get("confidence_mean")
    if ref_conf and window.confidence.n >= thresholds.min_samples:
        conf = window.confidence.mean
        change = (conf - ref_conf) / ref_conf
        out.append(
            SignalResult(
                signal=CONFIDENCE_VS_TRAINING,
                value=conf,
                baseline=float(ref_conf),
                change=change,
                threshold=-thresholds.confidence_drop,
                breached=change <= -thresholds.confidence_drop,
                details={"threshold_name": "confidence_drop"},
            )
        )
    return out


@lru_cache(maxsize=64)
def training_metrics(raw: str | None) -> Mapping[str, Any] | None:
    """A ModelVersion's ``training_metrics`` JSON, parsed once per distinct text (read-only);
    None when absent or not a JSON object (registration checks it, so only old records lack it)."""
    if not raw:
        return None
    try:
        out = json.loads(raw)
    except ValueError:
        return None
    return out if isinstance(out, dict) else None
