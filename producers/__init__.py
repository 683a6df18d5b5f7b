"""The SDK services use to emit Continuum events, the shared consumer-side decode step with its
dead-letter queue, variant assignment for A/B tests, and the traffic simulator."""

from __future__ import annotations

from producers.deadletter import DeadLetterQueue, SafeDecoder
from producers.producer import DeliveryError, EventProducer, prepare_event

__all__ = ["DeadLetterQueue", "DeliveryError", "EventProducer", "SafeDecoder", "prepare_event"]
