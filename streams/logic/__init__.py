"""Pure, broker-free logic (river-style ``update(x)`` then ``get()``/``summary()``), used by the
Faust agents and by the replay jobs alike, so live and backfilled numbers agree.

State is plain mergeable data (counts, sums, sums of squares, log-bucket sketches) with
``to_dict``/``from_dict``: a table changelog carries it as JSON, never as pickles.
"""

from __future__ import annotations

from streams.logic.abtest import ArmTally, analyze
from streams.logic.alerts import AlertBook, AlertThresholds
from streams.logic.detectors import ChangeDetector, ChangePoint
from streams.logic.drift import DriftThresholds, SignalResult, evaluate, kl_divergence
from streams.logic.feedback import FeedbackTally
from streams.logic.health import HealthThresholds, check_health
from streams.logic.retrain import RetrainPolicy, due_triggers
from streams.logic.running import RunningStats
from streams.logic.sketch import QuantileSketch
from streams.logic.turns import TurnStats

__all__ = [
    "AlertBook",
    "AlertThresholds",
    "ArmTally",
    "ChangeDetector",
    "ChangePoint",
    "DriftThresholds",
    "FeedbackTally",
    "HealthThresholds",
    "QuantileSketch",
    "RetrainPolicy",
    "RunningStats",
    "SignalResult",
    "TurnStats",
    "analyze",
    "check_health",
    "due_triggers",
    "evaluate",
    "kl_divergence",
]
