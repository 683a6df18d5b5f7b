"""The model registry's Kafka side for the CLI: the logic is :mod:`streams.logic.registry`."""

from __future__ import annotations

from continuum.settings import Settings
from streams.logic.registry import (
    ALLOWED,
    CANDIDATE,
    DIMENSIONS,
    PROMOTED,
    RETIRED,
    Registry,
    RegistryError,
    inherited_baseline,
    skipped_dimensions,
    winning_version,
)

__all__ = [
    "ALLOWED",
    "CANDIDATE",
    "DIMENSIONS",
    "PROMOTED",
    "RETIRED",
    "Registry",
    "RegistryError",
    "inherited_baseline",
    "load_registry",
    "skipped_dimensions",
    "winning_version",
]


def load_registry(settings: Settings) -> Registry:
    from jobs.topicread import latest_by

    return Registry(latest_by(settings, "model-registry", "model_version"))
