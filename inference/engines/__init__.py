"""Generation engines behind one small interface (:class:`inference.engines.base.Engine`)."""

from __future__ import annotations

from typing import Any

from inference.engines.base import Engine, EngineError

__all__ = ["Engine", "EngineError", "make_engine"]


def make_engine(kind: str, **options: Any) -> Engine:
    """``llamacpp`` (GGUF on CPU, the demo's and tests' engine), ``vllm`` (GPU) or ``echo`` (no
    model: answers at once, for measuring the Kafka path and load-testing a deployment)."""
    if kind == "llamacpp":
        from inference.engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine(**options)
    if kind == "vllm":
        from inference.engines.vllm import VllmEngine

        return VllmEngine(**options)
    if kind == "echo":
        from inference.engines.echo import EchoEngine

        return EchoEngine(**options)
    raise ValueError(f"unknown engine {kind!r}; expected 'llamacpp', 'vllm' or 'echo'")
