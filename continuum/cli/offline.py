"""The offline loop: ``continuum evaluate`` (a test set against an OpenAI-compatible server),
``continuum feedback`` and ``continuum retrain`` (collect, prepare, check, generate-script)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from continuum.cli.common import Actions, Commands, command
from continuum.settings import Settings


def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.evaluate import EvalOptions
    from jobs.evaluate import evaluate as run_evaluation
    from jobs.quality import Thresholds

    opts = EvalOptions(
        server_url=args.server_url,
        model=args.model,
        concurrency=args.concurrency,
        timeout_s=args.timeout_s,
        max_tokens=args.max_tokens,
        skip_intent=args.skip_intent,
        skip_safety=args.skip_safety,
        skip_naturalness=args.skip_naturalness,
        skip_lead=args.skip_lead,
        thresholds=Thresholds(
            intent_accuracy=args.min_intent_accuracy, latency_p95_ms=args.max_p95_ms
        ),
    )
    report = run_evaluation(Path(args.test_data), opts, Path(args.output_dir), show_progress=True)
    s = report["summary"]
    for name, c in s["checks"].items():
        print(
            f"{name:16} {c['value']!s:>24}  threshold {c['threshold']:<8} "
            f"{'pass' if c['passed'] else 'FAIL'}"
        )
    for line in report["invalid_lines"]:
        print(f"invalid test-set line: {line}", file=sys.stderr)
    print(f"verdict: {'PASS' if s['passed'] else 'FAIL'}; report {report['event']['report_path']}")
    if args.publish:
        from producers.producer import EventProducer

        with EventProducer.from_settings(settings) as p:
            p.send("EvaluationResult", report["event"])
        print(f"published {report['evaluation_id']} to {settings.topic_prefix}evaluations")
    return 0 if s["passed"] else 3


def _feedback(args: argparse.Namespace, settings: Settings) -> list[dict[str, Any]]:
    from jobs.feedback import load

    records = load(
        settings,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        archive=Path(args.from_archive) if args.from_archive else None,
    )
    if args.model_version:
        records = [r for r in records if r.get("model_version") == args.model_version]
    return records


def feedback_analyze(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.feedback import analyze

    print(json.dumps(analyze(_feedback(args, settings)), indent=2, ensure_ascii=False))
    return 0


def feedback_report(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.feedback import analyze, report_markdown

    text = report_markdown(analyze(_feedback(args, settings)))
    if args.output_dir:
        out = Path(args.output_dir) / "feedback_report.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    else:
        print(text)
    return 0


def feedback_export(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.dataset import write_jsonl
    from jobs.feedback import training_pairs

    pairs, skipped = training_pairs(_feedback(args, settings), args.min_rating)
    out = Path(args.output_dir or ".") / "feedback_training.jsonl"
    write_jsonl(out, pairs)
    print(f"exported {len(pairs)} training pairs to {out}")
    for reason, n in skipped.most_common():
        print(f"  left out {n}: {reason}")
    return 0


def retrain_collect(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.dataset import collect
    from jobs.feedback import training_pairs

    pairs, skipped = training_pairs(_feedback(args, settings), args.min_rating)
    out = Path(args.output_dir) / "combined.jsonl"
    n, conversations, unreadable = collect(pairs, args.conversations or [], out)
    for e in unreadable:
        print(f"unreadable: {e}", file=sys.stderr)
    print(
        f"collected {n} records ({len(pairs)} from feedback, {conversations} "
        f"conversations) into {out}"
    )
    for reason, k in skipped.most_common():
        print(f"  feedback left out {k}: {reason}")
    return 0


def retrain_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.dataset import prepare

    out = Path(args.output_dir)
    manifest = prepare(
        Path(args.new_data),
        Path(args.original_data),
        out,
        original_ratio=args.original_ratio,
        shares=(args.train, args.eval, args.test),
        seed=args.seed,
    )
    print(json.dumps({k: manifest[k] for k in ("merge", "splits")}, indent=2))
    invalid = manifest["new"]["invalid"] + manifest["original"]["invalid"]
    unreadable = manifest["unreadable_lines"]
    if invalid or unreadable:
        print(
            f"{len(invalid)} invalid records and {len(unreadable)} unreadable "
            f"lines left out: reasons in {out / 'manifest.json'}",
            file=sys.stderr,
        )
    return 0


def retrain_script(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.dataset import finetune_script

    script = finetune_script(
        args.train_data,
        args.eval_data,
        base_model=args.base_model,
        output_dir=args.model_output,
        quant=args.quantization,
    )
    Path(args.output_script).write_text(script)
    print(f"wrote {args.output_script} (Unsloth + QLoRA, LoRA merge, GGUF {args.quantization})")
    return 0


def retrain_check(args: argparse.Namespace, settings: Settings) -> int:
    """The live retrain triggers, per model version, with the registry's states."""
    from jobs.registry import load_registry
    from jobs.topicread import read_to_end

    triggers = list(read_to_end(settings, "retrain-triggers"))
    registry = load_registry(settings)
    if not triggers:
        print("no retrain trigger has fired")
        return 0
    for t in sorted(triggers, key=lambda t: (t["model_version"], t["reason"])):
        state = registry.state(t["model_version"]) or "unregistered"
        print(
            f"{t['model_version']} ({state}): {t['reason']} value {t['value']:.4g} "
            f"threshold {t['threshold']:.4g} at {t['event_time']}"
        )
    return 1 if args.exit_code else 0


def _feedback_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data-dir", help="the seed's feedback_YYYYMMDD.jsonl files (default: the topic)"
    )
    src.add_argument("--from-archive", metavar="DIR", help="archive folder (default: the topic)")
    p.add_argument("--model-version", help="only feedback on this model version")


def register(sub: Commands) -> None:
    p = command(
        sub, "evaluate", evaluate, help="run a test set against an OpenAI-compatible server"
    )
    p.add_argument(
        "--test-data", required=True, help="JSONL of conversations with expected intents"
    )
    p.add_argument(
        "--server-url", default="http://127.0.0.1:8000", help="gateway or any OpenAI-compatible URL"
    )
    p.add_argument("--output-dir", default="results", help="where the JSON/Markdown reports go")
    p.add_argument("--model", help="model to ask for (default: the server's routing)")
    p.add_argument("--concurrency", type=int, default=4, help="calls at once")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per call")
    p.add_argument("--max-tokens", type=int, default=256, help="per answer")
    p.add_argument("--min-intent-accuracy", type=float, default=0.70, help="pass threshold")
    p.add_argument("--max-p95-ms", type=float, default=10_000.0, help="pass threshold (p95 below)")
    for dim in ("intent", "safety", "naturalness", "lead"):
        p.add_argument(f"--skip-{dim}", action="store_true", help=f"do not score {dim}")
    p.add_argument(
        "--no-publish",
        dest="publish",
        action="store_false",
        help="do not publish the EvaluationResult event",
    )

    fb = Actions(sub, "feedback", help="analyze, export or report user feedback")
    fb.add("analyze", feedback_analyze, help="counts, ratings and categories as JSON")
    p = fb.add("export", feedback_export, help="training pairs from rated feedback (JSONL)")
    p.add_argument("--output-dir", help="folder to write feedback_training.jsonl to")
    p.add_argument(
        "--min-rating", type=int, default=4, help="lowest rating kept without a correction"
    )
    p = fb.add("report", feedback_report, help="a Markdown report")
    p.add_argument("--output-dir", help="folder to write feedback_report.md to (default: print)")
    for leaf in fb.leaves:
        _feedback_source(leaf)

    rt = Actions(
        sub,
        "retrain",
        help="collect, prepare and check retraining data; write the fine-tuning script",
    )
    p = rt.add("collect", retrain_collect, help="feedback pairs + conversations -> combined.jsonl")
    _feedback_source(p)
    p.add_argument("--min-rating", type=int, default=4, help="lowest rating kept")
    p.add_argument("--conversations", nargs="*", help="JSONL files of chat-format conversations")
    p.add_argument("--output-dir", default="retrain", help="output folder")
    p = rt.add("prepare", retrain_prepare, help="clean, mix, dedupe and split train/eval/test")
    p.add_argument("--new-data", required=True, help="collected JSONL (combined.jsonl)")
    p.add_argument("--original-data", required=True, help="the original training JSONL")
    p.add_argument("--output-dir", default="retrain", help="output folder")
    p.add_argument("--original-ratio", type=float, default=0.7, help="share of original examples")
    p.add_argument("--train", type=float, default=0.85, help="train share")
    p.add_argument("--eval", type=float, default=0.10, help="eval share")
    p.add_argument("--test", type=float, default=0.05, help="test share")
    p.add_argument("--seed", type=int, default=42, help="sampling and split seed")
    p = rt.add("check", retrain_check, help="the retrain triggers that fired, per model version")
    p.add_argument("--exit-code", action="store_true", help="exit 1 when a trigger has fired")
    p = rt.add("generate-script", retrain_script, help="the Unsloth + QLoRA fine-tuning script")
    p.add_argument("--train-data", default="retrain/train.jsonl", help="train split")
    p.add_argument("--eval-data", default="retrain/eval.jsonl", help="eval split")
    p.add_argument("--output-script", default="retrain_colab.py", help="script to write")
    p.add_argument(
        "--base-model", default="unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit", help="base model"
    )
    p.add_argument(
        "--model-output", default="okla-retrained", help="folder the script writes the model to"
    )
    p.add_argument("--quantization", default="q4_k_m", help="GGUF quantization")
