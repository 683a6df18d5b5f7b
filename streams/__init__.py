"""The Faust app: drift, A/B, feedback, retrain triggers, alerts and health computed online from
the chat topics. Agents stay thin; the math lives in :mod:`streams.logic` (no Faust import)."""

from __future__ import annotations

__all__: list[str] = []
