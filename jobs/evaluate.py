"""`continuum evaluate`: run a test set against an OpenAI-compatible server (Continuum's gateway
or any other), score it (``jobs.quality``), write JSON + Markdown reports with a latency
histogram and a per-intent confusion matrix, and publish an ``EvaluationResult`` event that the
retrain trigger and the model registry read."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.progress import Progress

from jobs.quality import (
    SAFETY_CASES,
    Case,
    Thresholds,
    parse_test_set,
    predicted_intent,
    safety_messages,
    score,
)


@dataclass(frozen=True)
class EvalOptions:
    server_url: str
    model: str | None = None
    concurrency: int = 4
    timeout_s: float = 60.0
    max_tokens: int = 256
    temperature: float = 0.0
    skip_intent: bool = False
    skip_safety: bool = False
    skip_naturalness: bool = False
    skip_lead: bool = False
    thresholds: Thresholds = Thresholds()


async def _call(
    http: httpx.AsyncClient, opts: EvalOptions, messages: list[dict[str, str]], session: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": messages,
        "max_tokens": opts.max_tokens,
        "temperature": opts.temperature,
    }
    if opts.model:
        body["model"] = opts.model
    t0 = time.perf_counter()
    try:
        r = await http.post("/v1/chat/completions", json=body, headers={"X-Session-Id": session})
        latency = (time.perf_counter() - t0) * 1000
        if r.status_code != 200:
            return {
                "ok": False,
                "latency_ms": latency,
                "error": f"HTTP {r.status_code}: {r.text[:200]}",
            }
        data = r.json()
        return {
            "ok": True,
            "latency_ms": latency,
            "reply": data["choices"][0]["message"]["content"] or "",
            "model_version": data.get("model"),
            "extra": data.get("continuum") or {},
            "usage": data.get("usage") or {},
        }
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return {
            "ok": False,
            "latency_ms": (time.perf_counter() - t0) * 1000,
            "error": f"{type(exc).__name__}: {exc}",
        }


async def run_calls(
    cases: Sequence[Case], opts: EvalOptions, progress: Progress | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Every case and (unless skipped) every adversarial prompt, at most ``concurrency`` at once."""
    limit = asyncio.Semaphore(max(1, opts.concurrency))
    total = len(cases) + (0 if opts.skip_safety else len(SAFETY_CASES))
    task = progress.add_task("evaluating", total=total) if progress else None

    async with httpx.AsyncClient(
        base_url=opts.server_url.rstrip("/"), timeout=opts.timeout_s
    ) as http:

        async def one(messages: list[dict[str, str]], session: str) -> dict[str, Any]:
            async with limit:
                out = await _call(http, opts, messages, session)
            if progress is not None and task is not None:
                progress.advance(task)
            return out

        case_calls = [one(c.messages, f"eval-{c.case_id}") for c in cases]
        safety_calls = (
            []
            if opts.skip_safety
            else [one(safety_messages(s), f"eval-safety-{s.case_id}") for s in SAFETY_CASES]
        )
        answers = await asyncio.gather(*case_calls, *safety_calls)
    results = []
    for case, a in zip(cases, answers[: len(cases)], strict=True):
        reply = a.get("reply", "")
        results.append(
            {
                "case_id": case.case_id,
                **a,
                "reply": reply,
                "expected_intent": case.expected_intent,
                "predicted_intent": predicted_intent(reply, a.get("extra")) if a["ok"] else None,
                "expects_lead": case.expects_lead,
            }
        )
    safety = None
    if not opts.skip_safety:
        safety = []
        for s, a in zip(SAFETY_CASES, answers[len(cases) :], strict=True):
            reply = a.get("reply", "")
            safety.append(
                {
                    "case_id": s.case_id,
                    "category": s.category,
                    "prompt": s.prompt,
                    **a,
                    "reply": reply,
                    "violation": s.violation(reply) if a["ok"] else None,
                }
            )
    return results, safety


def _images(
    summary: Mapping[str, Any], results: Sequence[Mapping[str, Any]], out: Path, stem: str
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: dict[str, str] = {}
    lat = [r["latency_ms"] for r in results if r["ok"]]
    if lat:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.hist(lat, bins=min(30, max(5, len(lat) // 2)), color="#38bdf8")
        p95 = summary["checks"]["latency"]["p95"]
        ax.axvline(p95, color="#f43f5e", linestyle="--", label=f"p95 {p95:,.0f} ms")
        ax.axvline(
            summary["thresholds"]["latency_p95_ms"],
            color="#64748b",
            linestyle=":",
            label="threshold",
        )
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("calls")
        ax.legend()
        fig.tight_layout()
        path = out / f"{stem}_latency.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files["latency_histogram"] = path.name
    conf = summary["confusion"]
    if conf:
        expected = sorted(conf)
        predicted = sorted({p for row in conf.values() for p in row} | set(expected))
        grid = [[conf[e].get(p, 0) for p in predicted] for e in expected]
        fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(predicted), 1.2 + 0.55 * len(expected)))
        ax.imshow(grid, cmap="Blues")
        ax.set_xticks(range(len(predicted)), predicted, rotation=45, ha="right")
        ax.set_yticks(range(len(expected)), expected)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
        ax.set_xlabel("predicted intent")
        ax.set_ylabel("expected intent")
        fig.tight_layout()
        path = out / f"{stem}_confusion.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files["confusion_matrix"] = path.name
    return files


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1%}" if v <= 1 else f"{v:,.0f}"
    return str(v)


def markdown(report: Mapping[str, Any]) -> str:
    s = report["summary"]
    lines = [
        f"# Evaluation report — {report['model_version'] or 'unknown model'}",
        "",
        f"- run: `{report['evaluation_id']}` at {report['finished_at']}",
        f"- server: {report['server_url']}; test set: {report['test_set']}",
        f"- cases: {s['cases']} ({s['errors']} failed calls); invalid test-set lines: {len(report['invalid_lines'])}",
        f"- **verdict: {'PASS' if s['passed'] else 'FAIL'}**"
        + (f" (failed: {', '.join(s['failed_checks'])})" if s["failed_checks"] else ""),
        "",
        "| dimension | value | threshold | result |",
        "| --- | --- | --- | --- |",
    ]
    names = {
        "intent_accuracy": ("Intent accuracy", "≥"),
        "latency": ("Latency p95 (ms)", "<"),
        "safety": ("Safety violations", "≤"),
        "naturalness": ("Naturalidad RD", "≥"),
        "lead_capture": ("Lead capture", "≥"),
    }
    for key, c in s["checks"].items():
        title, op = names[key]
        lines.append(
            f"| {title} | {_fmt(c['value'])} | {op} {_fmt(c['threshold'])} | {'pass' if c['passed'] else '**FAIL**'} |"
        )
    lat = s["checks"]["latency"]
    lines += [
        "",
        "Latency (ms): " + ", ".join(f"{k} {_fmt(lat[k])}" for k in ("p50", "p90", "p95", "p99")),
    ]
    for title, key in (
        ("Latency histogram", "latency_histogram"),
        ("Confusion matrix", "confusion_matrix"),
    ):
        if key in report["images"]:
            lines += ["", f"## {title}", "", f"![{title}]({report['images'][key]})"]
    if s["confusion"]:
        lines += [
            "",
            "## Intents",
            "",
            "| expected | correct | total | most often predicted instead |",
            "| --- | --- | --- | --- |",
        ]
        for exp, row in s["confusion"].items():
            wrong = sorted(((n, p) for p, n in row.items() if p != exp), reverse=True)
            lines.append(
                f"| {exp} | {row.get(exp, 0)} | {sum(row.values())} | {wrong[0][1] if wrong else '-'} |"
            )
    safety = s["checks"].get("safety")
    if safety:
        lines += ["", f"## Safety ({safety['prompts']} adversarial prompts)", ""]
        if safety["violations"]:
            lines += [
                f"- `{v['case_id']}` ({v['category']}): matched “{v['matched']}”"
                for v in safety["violations"]
            ]
        else:
            lines.append("No violation detected.")
    if report["invalid_lines"]:
        lines += ["", "## Invalid test-set lines", ""] + [f"- {e}" for e in report["invalid_lines"]]
    return "\n".join(lines) + "\n"


def evaluate(
    test_set: Path, opts: EvalOptions, output_dir: Path, show_progress: bool = True
) -> dict[str, Any]:
    """Run, score and write the reports; returns the report (with ``event``: the
    EvaluationResult to publish). Raises ValueError when the test set has no valid case."""
    raw = test_set.read_bytes()
    cases, invalid = parse_test_set(raw.decode("utf-8").splitlines())
    if not cases:
        raise ValueError(f"{test_set}: no valid test case" + (f"; {invalid[0]}" if invalid else ""))
    with Progress(disable=not show_progress) as progress:
        results, safety = asyncio.run(run_calls(cases, opts, progress))
    summary = score(
        results,
        safety,
        opts.thresholds,
        skip_intent=opts.skip_intent,
        skip_naturalness=opts.skip_naturalness,
        skip_lead=opts.skip_lead,
    )
    finished = datetime.now(UTC)
    models = sorted({r["model_version"] for r in results if r.get("model_version")})
    model_version = opts.model or (models[0] if len(models) == 1 else ",".join(models)) or "unknown"
    stamp = finished.strftime("%Y%m%d_%H%M%S")
    evaluation_id = f"eval-{stamp}-{model_version}"
    stem = f"evaluation_report_{stamp}"
    output_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "evaluation_id": evaluation_id,
        "finished_at": finished.isoformat(),
        "model_version": model_version,
        "server_url": opts.server_url,
        "test_set": f"{test_set.name} sha256:{hashlib.sha256(raw).hexdigest()[:16]}",
        "invalid_lines": invalid,
        "summary": summary,
        "images": _images(summary, results, output_dir, stem),
        "results": results,
        "safety": safety,
    }
    json_path = output_dir / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    (output_dir / f"{stem}.md").write_text(markdown(report))
    checks = summary["checks"]
    lat = checks["latency"]
    report["event"] = {
        "event_id": str(uuid.uuid4()),
        "event_time": int(finished.timestamp() * 1000),
        "evaluation_id": evaluation_id,
        "model_version": model_version,
        "test_set": report["test_set"],
        "cases": summary["cases"],
        "errors": summary["errors"],
        "intent_accuracy": summary["intent_accuracy"],
        "latency_p50_ms": lat["p50"],
        "latency_p90_ms": lat["p90"],
        "latency_p95_ms": lat["p95"],
        "latency_p99_ms": lat["p99"],
        "safety_prompts": checks["safety"]["prompts"] if "safety" in checks else 0,
        "safety_violations": checks["safety"]["value"] if "safety" in checks else None,
        "naturalness_score": checks["naturalness"]["value"] if "naturalness" in checks else None,
        "lead_capture_rate": checks["lead_capture"]["value"] if "lead_capture" in checks else None,
        "passed": summary["passed"],
        "failed_checks": summary["failed_checks"],
        "thresholds": summary["thresholds"],
        "report_path": str(json_path),
        "metadata": {"server_url": opts.server_url, "concurrency": str(opts.concurrency)},
    }
    return report
