"""Generation engines behind one small interface (:class:`inference.engines.base.Engine`)."""

from __future__ import annotations

from typing import Any

from inference.engines.base import Engine, EngineError

__all__ = ["Engine", "EngineError", "make_engine"]


def make_engine(kind: str, **options: Any) -> Engine:
    """``llamacpp`` (GGUF on CPU, the demo's and tests' engine) or ``vllm`` (GPU)."""
    if kind == "llamacpp":
        from inference.engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine(**options)
    if kind == "vllm":
        from inference.engines.vllm import VllmEngine

        return VllmEngine(**options)
    raise ValueError(f"unknown engine {kind!r}; expected 'llamacpp' or 'vllm'")
