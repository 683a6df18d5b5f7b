from __future__ import annotations


class BrokerError(RuntimeError):
    """The local broker could not be set up, started or reached."""
