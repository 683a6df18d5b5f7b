"""The Kafka-fed LLM worker (vLLM on GPU, llama.cpp on CPU) and its OpenAI-compatible gateway."""

from __future__ import annotations

__all__: list[str] = []
