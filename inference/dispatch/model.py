"""The dispatch model: gradient boosting (scikit-learn's histogram GBM) over the 18 pair features,
trained at first run on synthetic dispatches and kept in a folder (``model.pkl`` and
``info.json``) so a restart serves the same version.

A request is answered by scoring every available driver and choosing the most likely to complete
it; ``confidence`` is that probability. The training metrics kept with the model are the baseline
the streams compare live traffic to ("comparación vs métricas de entrenamiento"): accuracy,
AUC, confidence of the chosen drivers, and the distribution of every feature of the chosen pairs.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.dispatch.features import CATEGORIES, FEATURES, as_row, candidates
from inference.dispatch.rules import nearest_driver
from inference.dispatch.world import dispatches, success_probability

log = logging.getLogger(__name__)

DEFAULT_VERSION = "gbm-v2"
BINS = 10
# Clock features: any window of minutes sees one hour and weekday, never the training's spread
# over the week, so comparing them with training would always "drift". Not monitored; nor is the
# ETA, which is the distance at the hour's speed (the distance itself is).
CLOCK_FEATURES = ("hour", "day_of_week", "is_peak", "eta_min")


@dataclass
class DispatchModel:
    version: str
    estimator: Any
    info: dict[str, Any]

    def probabilities(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(np.asarray(rows, dtype=float))[:, 1])

    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The seed's answer for one request; raises ``DispatchRequestError`` (bad field) or
        ``LookupError`` (no driver available)."""
        pairs = candidates(request)
        if not pairs:
            raise LookupError("no available driver in the request")
        probs = self.probabilities([as_row(f) for _, f in pairs])
        best = int(np.argmax(probs))
        driver, feats = pairs[best]
        ranked = sorted(zip(probs.tolist(), (d for d, _ in pairs), strict=True), reverse=True)
        return {
            "prediction": driver,
            "confidence": round(float(probs[best]), 4),
            "model_version": self.version,
            "features": feats,
            "candidates": [{"driver_id": d, "score": round(p, 4)} for p, d in ranked[:3]],
        }


def _distribution(values: list[Any], name: str) -> dict[str, Any]:
    """A feature's training distribution in the shape the streams compare windows with
    (``streams.logic.features``): booleans and labels as shares of each value (booleans as
    "true"/"false"), numbers as decile bins with a sample for the KS test."""
    if name in CATEGORIES or isinstance(values[0], bool):
        cats = CATEGORIES.get(name, ("false", "true"))
        shares = {c: 0.0 for c in cats}
        for v in values:
            shares[str(v).lower() if isinstance(v, bool) else v] += 1 / len(values)
        return {"type": "categorical", "shares": {k: round(v, 5) for k, v in shares.items()}}
    arr = np.asarray(values, dtype=float)
    edges = np.unique(np.quantile(arr, np.linspace(0, 1, BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, arr, side="right"), minlength=len(edges) + 1)
    return {
        "type": "numeric",
        "mean": round(float(arr.mean()), 5),
        "std": round(float(arr.std()), 5),
        "edges": [round(float(e), 6) for e in edges],
        "shares": [round(float(c) / len(arr), 5) for c in counts],
        "sample": [round(float(v), 4) for v in arr[:: max(1, len(arr) // 500)][:500]],
    }


def train(
    version: str = DEFAULT_VERSION, *, seed: int = 7, n_dispatches: int = 6000
) -> DispatchModel:
    """Train on synthetic dispatches (every pair labelled by a draw from the ground truth); the
    last fifth of the dispatches is held out for the training metrics."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import roc_auc_score

    started = time.monotonic()
    rng = random.Random(seed + 1)
    data = dispatches(seed, n_dispatches)
    cut = n_dispatches * 4 // 5
    split: dict[str, tuple[list[list[float]], list[int]]] = {"train": ([], []), "test": ([], [])}
    for i, req in enumerate(data):
        xs, ys = split["train" if i < cut else "test"]
        for _, f in candidates(req):
            xs.append(as_row(f))
            ys.append(int(rng.random() < success_probability(f)))
    cat = [name in CATEGORIES for name in FEATURES]
    est = HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.08, categorical_features=cat, random_state=seed
    )
    x_train, y_train = np.asarray(split["train"][0]), np.asarray(split["train"][1])
    x_test, y_test = np.asarray(split["test"][0]), np.asarray(split["test"][1])
    est.fit(x_train, y_train)
    proba = est.predict_proba(x_test)[:, 1]
    model = DispatchModel(version, est, {})
    chosen: list[dict[str, Any]] = []
    confidences, p_model, p_rules = [], [], []
    for req in data[cut:]:
        answer = model.predict(req)
        chosen.append(answer["features"])
        confidences.append(answer["confidence"])
        p_model.append(success_probability(answer["features"]))
        _, rule_features = nearest_driver(req)
        assert rule_features is not None  # every synthetic dispatch has an available driver
        p_rules.append(success_probability(rule_features))
    imp = permutation_importance(
        est, x_test, y_test, scoring="roc_auc", n_repeats=3, random_state=seed
    )
    importance = sorted(
        (
            {"feature": name, "importance": round(float(m), 5), "std": round(float(s), 5)}
            for name, m, s in zip(FEATURES, imp.importances_mean, imp.importances_std, strict=True)
        ),
        key=lambda d: -d["importance"],
    )
    conf = np.asarray(confidences)
    model.info = {
        "model_name": "dispatch",
        "model_version": version,
        "algorithm": "HistGradientBoostingClassifier",
        "features": list(FEATURES),
        "trained_at": int(time.time() * 1000),
        "training_seconds": round(time.monotonic() - started, 2),
        "seed": seed,
        "training_metrics": {
            "dispatches": n_dispatches,
            "pairs_train": len(y_train),
            "pairs_test": len(y_test),
            "accuracy": round(float(((proba >= 0.5) == y_test).mean()), 4),
            "auc": round(float(roc_auc_score(y_test, proba)), 4),
            "confidence_mean": round(float(conf.mean()), 4),
            "confidence_std": round(float(conf.std()), 4),
            "expected_success_model": round(float(np.mean(p_model)), 4),
            "expected_success_rules": round(float(np.mean(p_rules)), 4),
            "feature_distributions": {
                name: _distribution([f[name] for f in chosen], name)
                for name in FEATURES
                if name not in CLOCK_FEATURES
            },
            "unmonitored_features": list(CLOCK_FEATURES),
        },
        "feature_importance": importance,
    }
    return model


def save(model: DispatchModel, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "model.pkl.tmp"
    tmp.write_bytes(pickle.dumps(model.estimator))
    tmp.replace(folder / "model.pkl")
    tmp = folder / "info.json.tmp"
    tmp.write_text(json.dumps(model.info, indent=1), encoding="utf-8")
    tmp.replace(folder / "info.json")


def load_or_train(
    folder: Path, version: str = DEFAULT_VERSION, *, seed: int = 7, retrain: bool = False
) -> DispatchModel:
    """The model kept in ``folder`` (this version), else a new one trained and kept there."""
    info_path, pkl = folder / "info.json", folder / "model.pkl"
    if not retrain and info_path.exists() and pkl.exists():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("model_version") == version:
            # Our own file, written by save() above: trusted like the code that wrote it.
            return DispatchModel(version, pickle.loads(pkl.read_bytes()), info)  # noqa: S301
        log.info("model in %s is %s, not %s: training", folder, info.get("model_version"), version)
    log.info("training dispatch model %s (first run)...", version)
    model = train(version, seed=seed)
    save(model, folder)
    log.info(
        "trained %s in %.1fs: accuracy %.3f, AUC %.3f",
        version,
        model.info["training_seconds"],
        model.info["training_metrics"]["accuracy"],
        model.info["training_metrics"]["auc"],
    )
    return model
