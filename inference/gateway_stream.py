"""The gateway's side of a streamed call: the request's chunks and final response in, OpenAI's
``chat.completion.chunk`` server-sent events out (:class:`StreamCall`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from inference.protocol import ERR_ENGINE, ERR_TIMEOUT, openai_error
from inference.streaming import (
    StreamAssembler,
    StreamBroken,
    completion_chunk,
    sse,
    usage_chunk,
)

if TYPE_CHECKING:
    from inference.gateway import Gateway


class StreamCall:
    """One streamed call on the gateway: the request's chunks and final response, in, and the
    server-sent events for the client, out."""

    def __init__(self, gateway: Gateway, event: dict[str, Any], *, include_usage: bool) -> None:
        self.gateway = gateway
        self.request_id: str = event["request_id"]
        self.model = event.get("model") or ""
        self.deadline = time.monotonic() + gateway.config.timeout_s + 1.0
        self.include_usage = include_usage
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.assembler = StreamAssembler()
        self.started = time.perf_counter()
        self.created = int(time.time())
        self.completion_id = f"chatcmpl-{self.request_id}"
        self.outcome = ""  # done | error | timeout | broken | disconnected
        self.status = "200"
        self._first = True
        self._cancelled = False

    def _chunk(self, delta: Mapping[str, Any], finish: str | None = None) -> bytes:
        return sse(completion_chunk(self.completion_id, self.model, self.created, delta, finish))

    def _text(self, text: str) -> bytes:
        if self._first:
            self._first = False
            self.gateway.metrics.ttft.observe((time.perf_counter() - self.started) * 1000)
        return self._chunk({"content": text})

    def _error(self, kind: str, message: str, outcome: str) -> list[bytes]:
        self.outcome = outcome
        self.status = str(openai_error(kind, message)[0])
        return [sse(openai_error(kind, message)[1]), sse("[DONE]")]

    async def events(self, gone: Callable[[], bool] = lambda: False) -> AsyncIterator[bytes]:
        """The call's server-sent events, up to ``[DONE]``. ``gone()`` tells whether the client
        left while nothing was sent (checked twice a second)."""
        yield self._chunk({"role": "assistant", "content": ""})
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.cancel("timeout")
                for data in self._error(
                    ERR_TIMEOUT,
                    f"no answer within {self.gateway.config.timeout_s:.0f}s "
                    f"(request {self.request_id})",
                    "timeout",
                ):
                    yield data
                return
            try:
                kind, event = await asyncio.wait_for(self.queue.get(), min(left, 0.5))
            except TimeoutError:
                if gone():
                    self.outcome = "disconnected"
                    return
                continue
            self.model = self.model or event.get("model_version") or ""
            try:
                if kind == "chunk":
                    text = self.assembler.feed(event)
                    if text:
                        yield self._text(text)
                    continue
                error = event.get("error")
                if error:
                    for data in self._error(error["type"], error["message"], "error"):
                        yield data
                    return
                rest = self.assembler.finish(event.get("text") or "")
            except StreamBroken as exc:
                self.cancel("stream_broken")
                for data in self._error(ERR_ENGINE, str(exc), "broken"):
                    yield data
                return
            if rest:
                yield self._text(rest)
            yield self._chunk({}, event.get("finish_reason") or "stop")
            if self.include_usage:
                yield sse(
                    usage_chunk(
                        self.completion_id,
                        self.model,
                        self.created,
                        int(event.get("prompt_tokens") or 0),
                        int(event.get("completion_tokens") or 0),
                    )
                )
            yield sse("[DONE]")
            self.outcome = "done"
            return

    def cancel(self, reason: str) -> None:
        if not self._cancelled:
            self._cancelled = True
            self.gateway.cancel(self.request_id, reason)

    def disconnected(self) -> None:
        self.outcome = "disconnected"
        self.status = "499"  # client closed the connection (nginx's code)
        self.cancel("client_disconnected")

    def close(self) -> None:
        self.gateway._close_stream(self.request_id)
        if self.outcome:
            self.gateway.metrics.streams.labels(self.outcome).inc()
