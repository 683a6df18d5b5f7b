from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from continuum.retry import TRANSIENT, KafkaRetry, KafkaUnavailable, is_transient


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def _failing(code: int, times: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise KafkaException(KafkaError(code))
        return "ok"

    return calls, fn


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
    ],
)
def test_each_transient_error_is_waited_out(code: int) -> None:
    clock = Clock()
    calls, fn = _failing(code, 3)
    assert KafkaRetry(deadline_s=30).call(fn, "x", sleep=clock.sleep, clock=clock) == "ok"
    assert len(calls) == 4 and len(clock.sleeps) == 3
    assert all(0 < s <= 5.0 for s in clock.sleeps)


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.INVALID_REQUEST,
    ],
)
def test_a_permanent_error_fails_at_once(code: int) -> None:
    clock = Clock()
    calls, fn = _failing(code, 99)
    with pytest.raises(KafkaException):
        KafkaRetry().call(fn, "x", sleep=clock.sleep, clock=clock)
    assert len(calls) == 1 and clock.sleeps == []


def test_a_fatal_error_and_a_plain_exception_are_not_retried() -> None:
    fatal = KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION, fatal=True)
    assert not is_transient(KafkaException(fatal))
    assert not is_transient(ValueError("x"))
    assert KafkaError.NOT_LEADER_FOR_PARTITION in TRANSIENT


def test_the_deadline_ends_with_one_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    calls, fn = _failing(KafkaError.LEADER_NOT_AVAILABLE, 10_000)
    with pytest.raises(
        KafkaUnavailable, match=r"gateway: reading replies: Kafka still failing after 2\ds"
    ):
        KafkaRetry(deadline_s=20, log_every_s=30).call(
            fn, "gateway: reading replies", sleep=clock.sleep, clock=clock
        )
    assert len(calls) > 5
    # One warning for the whole wait, not one per attempt.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "retrying for up to 20s" in warnings[0].getMessage()
