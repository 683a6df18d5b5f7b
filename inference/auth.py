"""API keys of the OpenAI-compatible gateway (what vLLM's ``--api-key`` does, for several keys).

- Keys come from ``CONTINUUM_GATEWAY_API_KEYS`` (comma-separated) and/or the file named by
  ``CONTINUUM_GATEWAY_API_KEYS_FILE`` (one key per line, optionally ``name:key``; ``#`` comments),
  re-read when the file changes, so a key is rotated without a restart.
- Only SHA-256 digests are kept; a presented key is compared with every digest in constant time
  (``hmac.compare_digest``, no early exit), so timing tells nothing about which key nearly
  matched.
- A key is identified by its name (``key-N`` when unnamed) in metrics and logs, never by its
  value.
- An optional per-key rate limit (requests per minute, a token bucket) answers 429 with
  ``Retry-After``.
No key configured means the gateway is open (the local demo); the start-up log says so.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_keys(text: str, *, start: int = 1) -> dict[str, bytes]:
    """``name -> digest`` from lines or commas of ``key`` / ``name:key``."""
    out: dict[str, bytes] = {}
    n = start
    for raw in text.replace(",", "\n").splitlines():
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        name, sep, key = item.partition(":")
        if not sep:
            name, key = f"key-{n}", item
        name, key = name.strip(), key.strip()
        if not key:
            raise ValueError(f"API key {name!r} is empty")
        if name in out:
            raise ValueError(f"API key name {name!r} appears twice")
        out[name] = _digest(key)
        n += 1
    return out


@dataclass
class Bucket:
    tokens: float
    stamp: float


@dataclass
class ApiKeys:
    inline: str = ""
    path: Path | None = None
    rate_per_min: float = 0.0
    clock: Callable[[], float] = time.monotonic
    _keys: dict[str, bytes] = field(default_factory=dict, init=False)
    _mtime: float | None = field(default=None, init=False)
    _checked: float = field(default=-math.inf, init=False)
    _buckets: dict[str, Bucket] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._reload(force=True)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def names(self) -> list[str]:
        return sorted(self._keys)

    def _reload(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._checked < 2.0:
            return
        self._checked = now
        mtime = None
        if self.path is not None:
            try:
                mtime = self.path.stat().st_mtime
            except OSError as exc:
                raise ValueError(
                    f"CONTINUUM_GATEWAY_API_KEYS_FILE={self.path}: cannot read it ({exc.strerror})"
                ) from None
        if not force and mtime == self._mtime:
            return
        keys = parse_keys(self.inline)
        if self.path is not None:
            keys.update(parse_keys(self.path.read_text(), start=len(keys) + 1))
        self._keys, self._mtime = keys, mtime

    def identify(self, headers: Mapping[str, str]) -> str | None:
        """The name of the key in ``Authorization: Bearer <key>``, or None."""
        try:
            self._reload()
        except ValueError:
            pass  # keep the keys last read; the file is being replaced
        header = headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        probe = _digest(presented.strip())
        found = None
        for name, digest in self._keys.items():
            if hmac.compare_digest(probe, digest) and found is None:
                found = name
        return found

    def admit(self, name: str) -> float:
        """0 when this key may send one more request now, else the seconds to wait."""
        if self.rate_per_min <= 0:
            return 0.0
        now = self.clock()
        rate = self.rate_per_min / 60.0
        b = self._buckets.setdefault(name, Bucket(self.rate_per_min, now))
        b.tokens = min(self.rate_per_min, b.tokens + (now - b.stamp) * rate)
        b.stamp = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / rate
