"""``echo``: an engine that answers at once with the caller's own words, for measuring what the
Kafka path itself costs (the way LLM gateways publish their overhead: against an upstream that
answers instantly) and for load-testing a deployment's brokers, gateways and workers without a
model. Never a chatbot's engine: its answers carry the model version ``echo`` unless told.

The answer is the last user message's words, at most ``max_tokens`` of them (one word = one
token); ``token_ms`` spaces the words out to imitate generation. Streaming, cancellation and
deadlines behave as in the real engines, so every worker path can be exercised with it.
"""

from __future__ import annotations

import asyncio
import threading
import time

from inference.engines.base import OnText, not_started
from inference.protocol import GenerationRequest, GenerationResult


class EchoEngine:
    name = "echo"

    def __init__(
        self,
        *,
        model_version: str | None = None,
        max_concurrency: int = 256,
        token_ms: float = 0.0,
        model_path: str | None = None,  # accepted (the factory passes it) and ignored
    ) -> None:
        self.model_version = model_version or "echo"
        self.max_concurrency = max(1, max_concurrency)
        self.token_ms = max(0.0, token_ms)
        self.loaded = False

    async def start(self) -> None:
        self.loaded = True

    async def stop(self) -> None:
        self.loaded = False

    def info(self) -> dict[str, str]:
        return {
            "engine": self.name,
            "model_version": self.model_version,
            "slots": str(self.max_concurrency),
            "token_ms": str(self.token_ms),
        }

    @staticmethod
    def words(request: GenerationRequest) -> list[str]:
        """The answer's tokens: the last user message's words, up to ``max_tokens``."""
        last = next(
            (m for m in reversed(request.messages) if m.get("role") == "user"),
            request.messages[-1] if request.messages else {"content": ""},
        )
        content = last.get("content") or ""
        if not isinstance(content, str):  # OpenAI content parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return content.split()[: request.sampling.max_tokens]

    async def generate(
        self,
        request: GenerationRequest,
        *,
        on_text: OnText | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        started = time.time() * 1000
        if (early := not_started(request, cancel, started)) is not None:
            return early
        words = self.words(request)
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in request.messages)
        out: list[str] = []
        first: float | None = None
        finish = "length" if len(words) >= request.sampling.max_tokens else "stop"
        for i, word in enumerate(words):
            if self.token_ms:
                await asyncio.sleep(self.token_ms / 1000)
            if cancel is not None and cancel.is_set():
                finish = "cancelled"
                break
            now = time.time() * 1000
            if request.deadline_ms is not None and now > request.deadline_ms:
                finish = "timeout"
                break
            piece = word if i == 0 else " " + word
            first = now if first is None else first
            out.append(piece)
            if on_text is not None:
                on_text(piece, 1)
        return GenerationResult(
            text="".join(out),
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(out),
            started_ms=started,
            first_token_ms=first,
            finished_ms=time.time() * 1000,
        )
