"""Batch jobs: replay/backfill of baselines, archive, evaluation, feedback export, retraining."""

from __future__ import annotations

__all__: list[str] = []
