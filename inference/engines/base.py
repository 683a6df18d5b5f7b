"""The engine interface the worker drives, and the factory that picks one by name."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from inference.protocol import GenerationRequest, GenerationResult

# Called with each piece of generated text and how many tokens it holds, as it is generated
# (from the engine's thread: the callee hands it to its own loop).
OnText = Callable[[str, int], None]


class EngineError(RuntimeError):
    """The engine could not be loaded or failed on a request (not the request's fault)."""


@runtime_checkable
class Engine(Protocol):
    """Generates chat completions.

    ``generate`` is a coroutine and may be awaited by many tasks at once: an engine that batches
    (vLLM) batches them continuously; one that cannot (a single llama.cpp context) queues them.
    It must return a result whose ``finish_reason`` is ``timeout`` when the request's deadline
    passed mid-generation, and never block the event loop.

    Streaming: with ``on_text`` the engine reports the text as it is generated (the pieces
    concatenate to the result's text); once ``cancel`` is set it stops within a token and returns
    what it has with ``finish_reason`` ``cancelled``.
    """

    name: str
    model_version: str
    max_concurrency: int  # how many requests the engine can usefully work on at once

    async def start(self) -> None: ...

    async def generate(
        self,
        request: GenerationRequest,
        *,
        on_text: OnText | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult: ...

    async def stop(self) -> None: ...

    def info(self) -> dict[str, str]: ...


def not_started(
    request: GenerationRequest, cancel: threading.Event | None, now_ms: float
) -> GenerationResult | None:
    """The result of a request that must not start generating: its deadline passed, or it was
    cancelled while it waited; None to go on."""
    if request.deadline_ms is not None and now_ms > request.deadline_ms:
        return GenerationResult("", "timeout", 0, 0, now_ms, None, now_ms)
    if cancel is not None and cancel.is_set():
        return GenerationResult("", "cancelled", 0, 0, now_ms, None, now_ms)
    return None
