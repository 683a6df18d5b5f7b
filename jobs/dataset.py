"""`continuum retrain collect|prepare|check|generate-script`: the chatbot seed's retraining
pipeline — collect feedback pairs and conversations, deduplicate, validate (roles, lengths, PII
scrubbed), merge with the original dataset at a ratio, split by session, and write the
fine-tuning script (Unsloth + QLoRA, LoRA merge, GGUF export).

Pure functions over chat-format records ``{"messages": [...], "session_id": ..., "metadata":
{...}}``; every record left out is reported with its reason, never dropped silently."""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from producers.pii import CARD, CEDULA, EMAIL, PHONE, PLATE, find_pii

# The SDK's detector (producers.pii); the dataset keeps its Spanish placeholders.
PLACEHOLDERS = {
    EMAIL: "[EMAIL]",
    CARD: "[TARJETA]",
    CEDULA: "[CEDULA]",
    PHONE: "[TELEFONO]",
    PLATE: "[PLACA]",
}


@dataclass(frozen=True)
class Limits:
    max_chars_per_message: int = 4000
    max_messages: int = 40
    min_answer_chars: int = 2


def normalized(text: str) -> str:
    """Lower case, accents and punctuation removed, whitespace collapsed: "¿Hola, cómo está?"
    and "hola como esta" are the same text."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def fingerprint(record: Mapping[str, Any]) -> str:
    """Hash of the normalized user and assistant turns (the system prompt is not content)."""
    parts = [
        f"{m['role']}:{normalized(m['content'])}"
        for m in record["messages"]
        if m.get("role") in ("user", "assistant")
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def scrub(text: str) -> tuple[str, int]:
    """PII replaced by placeholders; how many were replaced."""
    found = find_pii(text)
    parts, last = [], 0
    for f in found:
        parts += [text[last : f.start], PLACEHOLDERS[f.type]]
        last = f.end
    return "".join(parts) + text[last:], len(found)


def validate(
    record: Mapping[str, Any], limits: Limits = Limits()
) -> tuple[dict[str, Any] | None, str | None, int]:
    """(the clean record, None, PII replaced) or (None, reason, 0). Roles: an optional system
    message, then user/assistant alternating, starting with user and ending with assistant."""
    msgs = record.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return None, "no messages", 0
    if len(msgs) > limits.max_messages:
        return None, f"{len(msgs)} messages (limit {limits.max_messages})", 0
    roles = [m.get("role") if isinstance(m, Mapping) else None for m in msgs]
    body = roles[1:] if roles[0] == "system" else roles
    if not body or body[0] != "user" or body[-1] != "assistant":
        return None, f"roles {roles}: must start with user and end with assistant", 0
    for i, role in enumerate(body):
        if role != ("user" if i % 2 == 0 else "assistant"):
            return None, f"roles {roles}: user and assistant must alternate", 0
    clean, replaced = [], 0
    for i, m in enumerate(msgs):
        content = m.get("content")
        if not isinstance(content, str) or not content.strip():
            return None, f"messages[{i}] ({m.get('role')}) is empty", 0
        if len(content) > limits.max_chars_per_message:
            return (
                None,
                f"messages[{i}] has {len(content)} characters (limit {limits.max_chars_per_message})",
                0,
            )
        text, n = scrub(content.strip())
        replaced += n
        clean.append({"role": m["role"], "content": text})
    if len(clean[-1]["content"]) < limits.min_answer_chars:
        return None, "assistant answer too short", 0
    out = {**record, "messages": clean}
    out.setdefault("metadata", {})
    return out, None, replaced


def dedupe(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """First occurrence of each fingerprint, and how many repeats were dropped."""
    seen: set[str] = set()
    kept: list[dict[str, Any]] = []
    n = 0
    for rec in records:
        n += 1
        fp = fingerprint(rec)
        if fp not in seen:
            seen.add(fp)
            kept.append(rec)
    return kept, n - len(kept)


def clean(
    records: Iterable[Mapping[str, Any]], limits: Limits = Limits()
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Validated, scrubbed, deduplicated records (first occurrence kept) and the accounting:
    duplicates, invalid records by reason (with their index), PII replaced in what is kept."""
    valid: list[dict[str, Any]] = []
    replaced: dict[int, int] = {}
    invalid: list[dict[str, Any]] = []
    total = 0
    for i, rec in enumerate(records):
        total += 1
        ok, reason, n = validate(rec, limits)
        if ok is None:
            invalid.append({"index": i, "reason": reason})
            continue
        valid.append(ok)
        replaced[id(ok)] = n
    kept, duplicates = dedupe(valid)
    return kept, {
        "input": total,
        "kept": len(kept),
        "duplicates": duplicates,
        "invalid": invalid,
        "invalid_by_reason": dict(Counter(x["reason"].split(":")[0] for x in invalid)),
        "pii_replaced": sum(replaced[id(r)] for r in kept),
    }


def merge(
    new: Sequence[Mapping[str, Any]],
    original: Sequence[Mapping[str, Any]],
    original_ratio: float = 0.7,
    seed: int = 42,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All new records plus originals so they make ``original_ratio`` of the result (sampled
    with ``seed``); when there are too few originals all are used and the real ratio reported."""
    if not 0 <= original_ratio < 1:
        raise ValueError(f"original ratio must be in [0, 1), got {original_ratio}")
    want = round(len(new) * original_ratio / (1 - original_ratio))
    rng = random.Random(seed)
    picked = list(original) if want >= len(original) else rng.sample(list(original), want)
    merged = [dict(r) for r in new] + [dict(r) for r in picked]
    return merged, {
        "new": len(new),
        "original_used": len(picked),
        "original_available": len(original),
        "original_ratio": len(picked) / len(merged) if merged else None,
        "requested_ratio": original_ratio,
    }


def split(
    records: Sequence[Mapping[str, Any]],
    fractions: tuple[float, float, float] = (0.85, 0.10, 0.05),
    seed: int = 42,
) -> dict[str, list[dict[str, Any]]]:
    """train/eval/test with every session in exactly one split. Target sizes by largest
    remainder; whole sessions (shuffled with ``seed``) go to the split furthest below its
    target, so proportions are exact when sessions are single records and as close as whole
    sessions allow otherwise."""
    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"split fractions must add up to 1, got {fractions}")
    names = ("train", "eval", "test")
    n = len(records)
    raw = [f * n for f in fractions]
    target = [int(x) for x in raw]
    for i in sorted(range(3), key=lambda i: raw[i] - target[i], reverse=True)[: n - sum(target)]:
        target[i] += 1
    groups: dict[str, list[dict[str, Any]]] = {}
    for i, r in enumerate(records):
        sid = r.get("session_id") or f"__record-{i}"
        groups.setdefault(str(sid), []).append(dict(r))
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    # Big sessions first so the small ones can even out the remainders.
    order.sort(key=lambda s: -len(groups[s]))
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    for sid in order:
        deficit = [target[i] - len(out[names[i]]) for i in range(3)]
        best = max(range(3), key=lambda i: (deficit[i], -i))
        out[names[best]].extend(groups[sid])
    return out


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Records and the errors of unreadable lines (file and line named)."""
    records, errors = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError(f"expected an object, got {type(rec).__name__}")
            records.append(rec)
        except ValueError as exc:
            errors.append(f"{path.name}:{n}: {exc}")
    return records, errors


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


FINETUNE_SCRIPT = '''"""Fine-tune {base_model} on the Continuum retraining dataset with Unsloth + QLoRA, merge the
LoRA adapter and export GGUF ({quant}). Generated by `continuum retrain generate-script`; run it
on a GPU machine (Colab, a cloud VM): pip install unsloth trl datasets"""

from datasets import load_dataset
from trl import SFTConfig, SFTTrainer
from unsloth import FastLanguageModel
from unsloth.chat_templates import train_on_responses_only

TRAIN, EVAL = {train!r}, {eval!r}
OUT = {output_dir!r}

model, tokenizer = FastLanguageModel.from_pretrained(
    model_name={base_model!r}, max_seq_length={max_seq_length}, load_in_4bit=True
)
model = FastLanguageModel.get_peft_model(
    model,
    r={lora_r},
    lora_alpha={lora_alpha},
    lora_dropout=0.0,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    use_gradient_checkpointing="unsloth",
    random_state={seed},
)


def to_text(batch):
    return {{"text": [tokenizer.apply_chat_template(m, tokenize=False) for m in batch["messages"]]}}


data = load_dataset("json", data_files={{"train": TRAIN, "eval": EVAL}})
data = data.map(to_text, batched=True, remove_columns=data["train"].column_names)
trainer = SFTTrainer(
    model=model,
    tokenizer=tokenizer,
    train_dataset=data["train"],
    eval_dataset=data["eval"],
    args=SFTConfig(
        output_dir=OUT + "/checkpoints",
        dataset_text_field="text",
        max_seq_length={max_seq_length},
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        num_train_epochs={epochs},
        learning_rate={learning_rate},
        eval_strategy="epoch",
        logging_steps=10,
        seed={seed},
    ),
)
trainer = train_on_responses_only(trainer)
trainer.train()
print(trainer.evaluate())

model.save_pretrained_merged(OUT + "/merged", tokenizer, save_method="merged_16bit")
model.save_pretrained_gguf(OUT + "/gguf", tokenizer, quantization_method={quant!r})
print("done: register it with `continuum models register <version> --artifact", OUT + "/gguf`")
'''


def finetune_script(
    train: str,
    eval_: str,
    *,
    base_model: str = "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
    output_dir: str = "okla-retrained",
    quant: str = "q4_k_m",
    max_seq_length: int = 2048,
    lora_r: int = 16,
    lora_alpha: int = 16,
    epochs: int = 2,
    learning_rate: float = 2e-4,
    seed: int = 42,
) -> str:
    return FINETUNE_SCRIPT.format(
        train=train,
        eval=eval_,
        base_model=base_model,
        output_dir=output_dir,
        quant=quant,
        max_seq_length=max_seq_length,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        epochs=epochs,
        learning_rate=learning_rate,
        seed=seed,
    )


def collect(
    pairs: Sequence[Mapping[str, Any]], conversation_files: Iterable[Path], out: Path
) -> tuple[int, int, list[str]]:
    """Feedback training pairs and chat-format conversation files into one JSONL at ``out``:
    (records written, conversations read, unreadable lines with file and line)."""
    conversations: list[dict[str, Any]] = []
    unreadable: list[str] = []
    for path in conversation_files:
        recs, errors = read_jsonl(Path(path))
        unreadable += errors
        conversations += recs
    n = write_jsonl(out, [*pairs, *conversations])
    return n, len(conversations), unreadable


def prepare(
    new_data: Path,
    original_data: Path,
    out: Path,
    *,
    original_ratio: float,
    shares: tuple[float, float, float],
    seed: int,
) -> dict[str, Any]:
    """Clean both sets, mix ``original_ratio`` of original examples in, drop duplicates across
    them, split train/eval/test by ``shares`` and write the splits and ``manifest.json`` (what
    was left out and why) to ``out``. Returns the manifest."""
    new, errors = read_jsonl(new_data)
    original, errors2 = read_jsonl(original_data)
    new_clean, new_acc = clean(new)
    orig_clean, orig_acc = clean(original)
    merged, mix = merge(new_clean, orig_clean, original_ratio, seed)
    merged, cross_duplicates = dedupe(merged)  # new and original may repeat each other
    splits = split(merged, shares, seed)
    for name, recs in splits.items():
        write_jsonl(out / f"{name}.jsonl", recs)
    manifest = {
        "unreadable_lines": errors + errors2,
        "new": new_acc,
        "original": orig_acc,
        "merge": mix,
        "cross_duplicates": cross_duplicates,
        "splits": {k: len(v) for k, v in splits.items()},
        "seed": seed,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest
