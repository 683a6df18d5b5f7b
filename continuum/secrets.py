"""Which configuration values are secrets (shared by the settings and the Kafka connection)."""

from __future__ import annotations


def sensitive(prop: str) -> bool:
    """A librdkafka (or similar) property whose value is a secret."""
    return any(w in prop for w in ("password", "secret", "token", ".pem", "jaas"))
