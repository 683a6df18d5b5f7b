"""A circuit breaker for calls to a model server (pure; the clock is injected).

CLOSED lets every call through and counts consecutive failures; ``failure_threshold`` of them in a
row open the circuit. OPEN refuses calls (the caller answers with its fallback at once instead of
waiting on a dead server) for ``reset_after_s``; after that the breaker is HALF_OPEN and lets one
probe call through at a time: its success closes the circuit, its failure opens it again for
another ``reset_after_s``. A passing health check while OPEN moves straight to HALF_OPEN.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    reset_after_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    state: str = field(default=CLOSED, init=False)
    failures: int = field(default=0, init=False)
    opened_at: float = field(default=0.0, init=False)
    transitions: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)
    _probing: bool = field(default=False, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {self.failure_threshold!r}")
        if self.reset_after_s <= 0:
            raise ValueError(f"reset_after_s must be > 0 seconds, got {self.reset_after_s!r}")

    def _move(self, to: str) -> None:
        if to != self.state:
            self.transitions.append((self.state, to))
            del self.transitions[:-100]
            self.state = to

    def allow(self) -> bool:
        """May a call go to the server now? In HALF_OPEN only one probe is let through at a time;
        the caller must then report it with :meth:`success` or :meth:`failure`."""
        with self._lock:
            if self.state == OPEN and self.clock() - self.opened_at >= self.reset_after_s:
                self._move(HALF_OPEN)
                self._probing = False
            if self.state == CLOSED:
                return True
            if self.state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self.failures = 0
            self._probing = False
            self._move(CLOSED)

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            self._probing = False
            if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
                self.opened_at = self.clock()
                self._move(OPEN)

    def healthy(self) -> None:
        """A health check passed: an open circuit may probe now instead of waiting out the
        reset time."""
        with self._lock:
            if self.state == OPEN:
                self._move(HALF_OPEN)
                self._probing = False
