"""The dispatch seed's "Fase 1": deterministic rules, the nearest available driver by Haversine
distance (ties: the better-rated, then the id). They answer when the model cannot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inference.dispatch.features import candidates
from producers.mlclient import FallbackAnswer

RULES_VERSION = "rules-v1"


def nearest_driver(request: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(driver_id, that pair's features), or (None, None) when no driver is available. Raises
    :class:`~inference.dispatch.features.DispatchRequestError` on a malformed request."""
    pairs = candidates(request)
    if not pairs:
        return None, None
    best = min(pairs, key=lambda p: (p[1]["distance_km"], -p[1]["driver_rating"], p[0]))
    return best


def rules_answer(request: Mapping[str, Any]) -> FallbackAnswer:
    """The rules as an :class:`~producers.mlclient.MLClient` fallback: the nearest driver, with
    the same 18 features the model logs (no confidence: rules have none)."""
    driver, feats = nearest_driver(request)
    return FallbackAnswer(driver, None, feats)
