"""A broker that is away makes every Kafka client log each failed attempt (librdkafka: one line per
connection try per broker; aiokafka: one per request), tens of thousands of lines for a short
outage. :class:`RateLimit` lets the first line of a kind through, drops the repeats for an
interval and then says how many it dropped, so an outage is a few lines.

librdkafka's errors reach Python's logging through the ``error_cb`` of :func:`quiet_client`
(routing its whole log through a Python logger costs a hot producer 10-25 % of its throughput);
:func:`install` puts the filter on that logger and on aiokafka's, Faust's and our own."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

# Numbers in a message (ports, offsets, durations) do not make it another kind of message.
_DIGITS = re.compile(r"\d+")


class RateLimit(logging.Filter):
    """Passes the first record of each kind per ``every_s``; the next one that passes carries the
    count of those dropped in between. A kind is the logger, the level, the message template and
    its first argument (for librdkafka: the facility, e.g. FAIL), with digits ignored."""

    def __init__(self, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._seen: dict[tuple[Any, ...], list[float]] = {}  # kind -> [last passed, dropped]
        self._lock = threading.Lock()

    def _kind(self, record: logging.LogRecord) -> tuple[Any, ...]:
        first = record.args[0] if isinstance(record.args, tuple) and record.args else None
        text = record.msg if isinstance(record.msg, str) else str(record.msg)
        if first is None:
            text = record.getMessage()
        return (
            record.name,
            record.levelno,
            _DIGITS.sub("#", text)[:120],
            _DIGITS.sub("#", str(first))[:120],
        )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        kind = self._kind(record)
        now = self.clock()
        with self._lock:
            state = self._seen.get(kind)
            if state is not None and now - state[0] < self.every_s:
                state[1] += 1
                return False
            dropped = int(state[1]) if state else 0
            self._seen[kind] = [now, 0]
            if len(self._seen) > 10_000:  # bounded, whatever a client logs
                self._seen.clear()
        if dropped:
            record.msg = (
                f"{record.getMessage()} ({dropped} similar line(s) in the last "
                f"{self.every_s:.0f}s not shown)"
            )
            record.args = ()
        return True


LIMIT = RateLimit()
NOISY = ("aiokafka", "faust.transport", "mode", "continuum.kafka", "producers")


def install(every_s: float | None = None) -> None:
    """Rate-limit the Kafka clients' loggers of this process (idempotent). A logger's filter
    applies to the records of that very logger, so it goes on every logger under the noisy
    names that exists now (call it after importing the clients: their modules make their
    loggers at import)."""
    if every_s is not None:
        LIMIT.every_s = every_s
    names = set(NOISY) | {
        n
        for n in list(logging.Logger.manager.loggerDict)
        if any(n == p or n.startswith(p + ".") for p in NOISY)
    }
    for name in names:
        logger = logging.getLogger(name)
        if LIMIT not in logger.filters:
            logger.addFilter(LIMIT)


KAFKA_ERRORS = logging.getLogger("continuum.kafka")


def _on_error(err: Any) -> None:
    KAFKA_ERRORS.warning("kafka client: %s", err)


def quiet_client() -> dict[str, Any]:
    """Config entries for a long-running client: librdkafka's own stderr log only for critical
    lines, its errors (a broker away, all brokers down, ...) through ``error_cb`` to a
    rate-limited logger: one line per kind of error per interval, with a count."""
    install()
    return {"log_level": 2, "error_cb": _on_error}
