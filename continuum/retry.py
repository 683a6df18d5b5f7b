"""Kafka is a network service: what a freshly created or recovering cluster answers for a few
seconds (no leader yet, not the leader any more, coordinator loading, a topic not known yet, a
broker unreachable) is waited out with capped exponential backoff up to a stated deadline; what
retrying cannot fix (authorization, an invalid request, a fatal client state) fails at once.

Every wait is logged once per interval with a count, never once per attempt, and a deadline that
passes raises one :class:`KafkaUnavailable` naming what was being done, for how long, and the
last error."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")
log = logging.getLogger(__name__)

# Errors a cluster gives while it starts, elects leaders, loads coordinators or restarts a
# broker; librdkafka marks some, not all, of them retriable.
TRANSIENT = frozenset(
    {
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.KAFKA_STORAGE_ERROR,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.REPLICA_NOT_AVAILABLE,
        KafkaError.FETCH_SESSION_ID_NOT_FOUND,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._WAIT_COORD,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._RESOLVE,
        KafkaError._MSG_TIMED_OUT,
    }
)


# What waiting does not fix: the cluster refused who we are (credentials, TLS trust, ACLs).
REFUSED = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)


class KafkaUnavailable(RuntimeError):
    """Kafka did not answer usefully within the deadline (the message says what was tried)."""


def kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def is_transient(exc: BaseException) -> bool:
    """True for the errors worth waiting out; a fatal client error never is."""
    err = kafka_error(exc)
    if err is None:
        return False
    if err.fatal() or err.code() in REFUSED:
        return False
    return err.code() in TRANSIENT or bool(err.retriable())


@dataclass(frozen=True)
class KafkaRetry:
    deadline_s: float = 60.0
    base_s: float = 0.1
    cap_s: float = 5.0
    log_every_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        r = (rng or random).random()
        return min(self.cap_s, self.base_s * 2 ** (attempt - 1)) * (0.5 + r / 2)

    def call(
        self,
        fn: Callable[[], T],
        what: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> T:
        """``fn()``, retried through transient Kafka errors until the deadline."""
        start = clock()
        attempt = 0
        last_log: float | None = None
        waited = 0
        while True:
            attempt += 1
            try:
                result = fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                now = clock()
                if now - start >= self.deadline_s:
                    raise KafkaUnavailable(
                        f"{what}: Kafka still failing after {now - start:.0f}s "
                        f"({attempt} attempts): {exc}"
                    ) from exc
                waited += 1
                if last_log is None or now - last_log >= self.log_every_s:
                    logger.warning(
                        "%s: %s; retrying for up to %.0fs (%d attempt(s) so far)",
                        what,
                        exc,
                        self.deadline_s,
                        attempt,
                    )
                    last_log = now
                sleep(min(self.delay(attempt), max(0.0, self.deadline_s - (now - start))))
                continue
            if waited:
                logger.info("%s: succeeded after %d retries", what, waited)
            return result


RETRY = KafkaRetry()


def with_retry(fn: Callable[[], T], what: str, deadline_s: float | None = None) -> T:
    policy = RETRY if deadline_s is None else KafkaRetry(deadline_s=deadline_s)
    return policy.call(fn, what)
