"""The engine interface the worker drives, and the factory that picks one by name."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from inference.protocol import GenerationRequest, GenerationResult


class EngineError(RuntimeError):
    """The engine could not be loaded or failed on a request (not the request's fault)."""


@runtime_checkable
class Engine(Protocol):
    """Generates chat completions.

    ``generate`` is a coroutine and may be awaited by many tasks at once: an engine that batches
    (vLLM) batches them continuously; one that cannot (a single llama.cpp context) queues them.
    It must return a result whose ``finish_reason`` is ``timeout`` when the request's deadline
    passed mid-generation, and never block the event loop.
    """

    name: str
    model_version: str
    max_concurrency: int  # how many requests the engine can usefully work on at once

    async def start(self) -> None: ...

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    async def stop(self) -> None: ...

    def info(self) -> dict[str, str]: ...
