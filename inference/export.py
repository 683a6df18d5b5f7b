"""GGUF -> Hugging Face model folder, so vLLM (which reads safetensors) can serve the same model
that the llama.cpp engine serves, without fetching weights from a hub.

Needs ``transformers``, ``gguf``, ``accelerate`` and ``torch`` (the ``vllm`` extra has them).
"""

from __future__ import annotations

import os
from pathlib import Path

from inference.engines.llamacpp import bundled_model_path


def export_hf(gguf: str | Path | None, out: str | Path) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything comes from the local file
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise RuntimeError(
            "export-hf needs transformers, gguf, accelerate and torch (pip install -e '.[vllm]')"
        ) from exc
    src = Path(gguf) if gguf else bundled_model_path()
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file not found: {src}")
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    # Loading a GGUF dequantizes it; drop the marker that forbids saving a "quantized" model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(torch.bfloat16)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
