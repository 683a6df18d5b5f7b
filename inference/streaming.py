"""Streamed answers, pure: how a worker batches generated text into ``InferenceChunk`` events, how
a gateway puts a request's chunks back together (in order, each once, across a worker crash), and
the OpenAI ``chat.completion.chunk`` shapes it sends as server-sent events.

No Kafka, no engine, no clock of its own: callers pass the time."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.ids import stable_id

# -- worker side ---------------------------------------------------------------------------------


@dataclass
class ChunkBatcher:
    """Generated text waiting to be published. The first text goes out at once (time to first
    token); after that a chunk is due every ``every_ms`` or once ``max_tokens`` tokens wait,
    whichever comes first: a chunk per token costs a Kafka record per token, a chunk per
    ``every_ms`` keeps the stream smooth to the eye."""

    every_ms: float = 25.0
    max_tokens: int = 16
    seq: int = 0
    tokens: int = 0  # generated so far in this attempt
    _text: list[str] = field(default_factory=list)
    _waiting: int = 0  # tokens in _text
    _last_ms: float | None = None

    def add(self, delta: str, now_ms: float, tokens: int = 1) -> bool:
        """Buffer ``delta``; True when a chunk is due now."""
        self._text.append(delta)
        self._waiting += tokens
        self.tokens += tokens
        return (
            self._last_ms is None
            or now_ms - self._last_ms >= self.every_ms
            or self._waiting >= self.max_tokens
        )

    def due(self, now_ms: float) -> bool:
        """Whether buffered text has waited ``every_ms`` (a timer asks between tokens)."""
        return bool(self._text) and (
            self._last_ms is None or now_ms - self._last_ms >= self.every_ms
        )

    def take(self, now_ms: float) -> tuple[int, str, int] | None:
        """(seq, text, tokens so far) of the next chunk, or None when nothing waits."""
        if not self._text:
            return None
        text = "".join(self._text)
        self._text.clear()
        self._waiting = 0
        self._last_ms = now_ms
        seq, self.seq = self.seq, self.seq + 1
        return seq, text, self.tokens


def chunk_event(
    request: Mapping[str, Any],
    attempt: str,
    seq: int,
    delta: str,
    tokens: int,
    *,
    model_version: str,
    worker_id: str | None,
    now_ms: int,
) -> dict[str, Any]:
    """The ``InferenceChunk`` event; its id is derived from (request, attempt, seq)."""
    request_id = str(request["request_id"])
    return {
        "event_id": stable_id("chunk", request_id, attempt, seq),
        "event_time": now_ms,
        "request_id": request_id,
        "attempt": attempt,
        "seq": seq,
        "delta": delta,
        "tokens": tokens,
        "model_version": model_version,
        "worker_id": worker_id,
    }


def cancel_event(request_id: str, reason: str, now_ms: int) -> dict[str, Any]:
    """The ``InferenceCancel`` of a request; one id per request, however often it is sent."""
    return {
        "event_id": stable_id("cancel", request_id),
        "event_time": now_ms,
        "request_id": request_id,
        "reason": reason,
    }


# -- gateway side --------------------------------------------------------------------------------


class StreamBroken(Exception):
    """The answer being streamed cannot be completed consistently (its worker stopped and the
    new generation says something else than what the client already has)."""


class StreamAssembler:
    """One streamed request's text as the client has seen it. Chunks of the attempt being
    followed are forwarded in ``seq`` order, each once; a chunk that arrives early waits for
    the ones before it. When another attempt shows up (the first worker died and the request was
    generated again) the client's text must be a prefix of the new attempt's: what it adds is
    forwarded, anything else breaks the stream. The final response's text is the answer:
    whatever of it the client has not seen yet is the last delta."""

    def __init__(self) -> None:
        self.sent = ""  # what the client has
        self.attempt: str | None = None
        self._next = 0
        self._early: dict[int, str] = {}
        self._text = ""  # the followed attempt's text so far (in order)
        self._left: set[str] = set()  # attempts given up for a newer one (a zombie's chunks)
        self.duplicates = 0

    def feed(self, chunk: Mapping[str, Any]) -> str:
        """The text to forward for this chunk ("" for nothing)."""
        attempt, seq, delta = str(chunk["attempt"]), int(chunk["seq"]), str(chunk["delta"])
        if attempt != self.attempt:
            if attempt in self._left:
                return ""  # a worker that lost the request still generating it
            if self.attempt is not None:
                self._left.add(self.attempt)
            self.attempt, self._next, self._early, self._text = attempt, 0, {}, ""
        if seq < self._next or seq in self._early:
            self.duplicates += 1
            return ""
        self._early[seq] = delta
        while self._next in self._early:
            self._text += self._early.pop(self._next)
            self._next += 1
        return self._advance(self._text)

    def finish(self, text: str) -> str:
        """The last delta, from the final response's whole ``text``."""
        return self._advance(text)

    def _advance(self, text: str) -> str:
        if text.startswith(self.sent):
            out = text[len(self.sent) :]
            self.sent = text
            return out
        if self.sent.startswith(text):
            return ""  # a new attempt still catching up with what the client has
        raise StreamBroken(
            "the worker generating this answer stopped and the answer generated again differs "
            f"from the {len(self.sent)} characters already sent"
        )


# -- OpenAI shapes -------------------------------------------------------------------------------


def completion_chunk(
    completion_id: str,
    model: str,
    created: int,
    delta: Mapping[str, Any],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish_reason}],
    }


def usage_chunk(
    completion_id: str, model: str, created: int, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """The last chunk of ``stream_options.include_usage``: no choices, the usage."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def sse(payload: Mapping[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` (or ``data: [DONE]``) and a blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()
