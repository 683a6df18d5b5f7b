"""`continuum feedback analyze|export|report`: the chatbot seed's feedback system over
Continuum's ``chat.feedback`` events (from the topic, the archive, or the seed's JSONL files).

Pure functions over Feedback dicts, and :func:`load` that reads them from one of the sources."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from continuum.settings import Settings
from schemas.catalog import default_catalog
from streams.logic.abtest import is_satisfied

# The schema's twelve categories minus the two that are not complaints.
NEGATIVE = frozenset(
    next(f for f in default_catalog().current("Feedback").raw["fields"] if f["name"] == "category")[
        "type"
    ]["symbols"]
) - {"good_response", "other"}
SYSTEM_PROMPT = (
    "Eres el asistente de OKLA, un marketplace de vehículos en República Dominicana. Responde en "
    "español dominicano, cercano y claro; ayuda a buscar, financiar, vender y agendar citas."
)


def from_seed_jsonl(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """The seed's files (``feedback_YYYYMMDD.jsonl``: session_id, timestamp, rating, thumbs,
    user_query, bot_response, correction, category, metadata) as Feedback-shaped dicts. A bad line
    raises ValueError naming the file and line."""
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                ts = raw.get("timestamp")
                when = (
                    int(datetime.fromisoformat(ts).timestamp() * 1000)
                    if isinstance(ts, str)
                    else int(ts or 0)
                )
                thumbs = raw.get("thumbs")
                if isinstance(thumbs, bool):
                    thumbs = "UP" if thumbs else "DOWN"
                meta = raw.get("metadata") or {}
                yield {
                    "session_id": str(raw["session_id"]),
                    "event_time": when,
                    "rating": raw.get("rating"),
                    "thumbs": thumbs.upper() if isinstance(thumbs, str) else None,
                    "category": raw.get("category") or "other",
                    "user_query": raw.get("user_query"),
                    "bot_response": raw.get("bot_response"),
                    "correction": raw.get("correction"),
                    "intent": meta.get("intent") or raw.get("intent"),
                    "model_version": meta.get("model_version") or raw.get("model_version"),
                    "metadata": {k: str(v) for k, v in meta.items()},
                }
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a feedback record ({exc})") from exc


def analyze(records: Sequence[Mapping[str, Any]], examples: int = 3) -> dict[str, Any]:
    """Distribution by category, rating and thumbs; satisfaction; the intents with the most
    negative feedback; a few examples per negative category."""
    by_cat = Counter(r.get("category") or "other" for r in records)
    by_rating = Counter(str(r["rating"]) for r in records if r.get("rating") is not None)
    thumbs = Counter(r["thumbs"] for r in records if r.get("thumbs"))
    per_intent: dict[str, Counter[str]] = {}
    for r in records:
        intent = r.get("intent") or "unknown"
        c = per_intent.setdefault(intent, Counter())
        c["total"] += 1
        c["negative"] += (r.get("category") in NEGATIVE) or not is_satisfied(r)
    worst = sorted(
        (
            {
                "intent": intent,
                "feedback": c["total"],
                "negative": c["negative"],
                "negative_share": c["negative"] / c["total"],
            }
            for intent, c in per_intent.items()
        ),
        key=lambda w: (-w["negative_share"], -w["feedback"], w["intent"]),
    )
    samples: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        cat = r.get("category") or "other"
        if cat in NEGATIVE and len(samples.setdefault(cat, [])) < examples:
            samples[cat].append(
                {
                    k: r.get(k)
                    for k in ("session_id", "user_query", "bot_response", "correction", "rating")
                }
            )
    rated = [r for r in records if r.get("rating") is not None or r.get("thumbs")]
    return {
        "total": len(records),
        "by_category": dict(by_cat.most_common()),
        "by_rating": dict(sorted(by_rating.items())),
        "thumbs": dict(thumbs),
        "satisfaction_rate": (sum(is_satisfied(r) for r in rated) / len(rated)) if rated else None,
        "with_correction": sum(1 for r in records if r.get("correction")),
        "worst_intents": worst[:10],
        "examples": samples,
    }


def training_pairs(
    records: Iterable[Mapping[str, Any]], min_rating: int = 4
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Chat-format training examples from feedback: the user's query answered by the user's
    correction when there is one, else by the bot's answer when it was rated >= ``min_rating``
    (or thumbs up). Also the count of records left out, by reason."""
    out: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for r in records:
        query = (r.get("user_query") or "").strip()
        if not query:
            skipped["no user_query"] += 1
            continue
        correction = (r.get("correction") or "").strip()
        rating = r.get("rating")
        good = (rating is not None and rating >= min_rating) or (
            rating is None and r.get("thumbs") == "UP"
        )
        if correction:
            answer, source = correction, "correction"
        elif good and (r.get("bot_response") or "").strip():
            answer, source = r["bot_response"].strip(), "rated"
        else:
            skipped[
                "no bot_response" if good else f"rating below {min_rating} and no correction"
            ] += 1
            continue
        out.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": query},
                    {"role": "assistant", "content": answer},
                ],
                "session_id": r.get("session_id"),
                "metadata": {
                    "source": f"feedback:{source}",
                    "rating": "" if rating is None else str(rating),
                    "category": r.get("category") or "",
                    "intent": r.get("intent") or "",
                    "model_version": r.get("model_version") or "",
                },
            }
        )
    return out, skipped


def report_markdown(summary: Mapping[str, Any], title: str = "Feedback report") -> str:
    lines = [f"# {title}", "", f"- feedback events: {summary['total']}"]
    sat = summary["satisfaction_rate"]
    lines.append(f"- satisfaction (rating ≥ 4 or 👍): {'-' if sat is None else f'{sat:.1%}'}")
    lines.append(f"- with a correction: {summary['with_correction']}")
    lines += ["", "## By category", "", "| category | count |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary["by_category"].items()]
    lines += ["", "## By rating", "", "| rating | count |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary["by_rating"].items()]
    lines += ["", "## Worst intents", "", "| intent | feedback | negative | share |"]
    lines += ["| --- | --- | --- | --- |"]
    lines += [
        f"| {w['intent']} | {w['feedback']} | {w['negative']} | {w['negative_share']:.1%} |"
        for w in summary["worst_intents"]
    ]
    for cat, items in summary["examples"].items():
        lines += ["", f"### {cat}", ""]
        for e in items:
            fix = f" → corrección: “{e['correction']}”" if e.get("correction") else ""
            lines.append(f"- “{e['user_query']}” → “{e['bot_response']}”{fix}")
    return "\n".join(lines) + "\n"


def load(
    settings: Settings, data_dir: Path | None = None, archive: Path | None = None
) -> list[dict[str, Any]]:
    """Feedback records from the seed's ``*.jsonl`` files in ``data_dir``, the archive's
    ``chat.feedback`` files under ``archive``, or else the ``chat.feedback`` topic."""
    if data_dir is not None:
        files = sorted(Path(data_dir).glob("*.jsonl"))
        if not files:
            raise ValueError(f"no .jsonl files in {data_dir}")
        return list(from_seed_jsonl(files))
    if archive is not None:
        from jobs.archive import archive_files, read_archive

        found = archive_files(Path(archive), "chat.feedback")
        if not found:
            raise ValueError(f"no chat.feedback archive files under {archive}")
        return list(read_archive(found))
    from jobs.topicread import read_to_end

    return list(read_to_end(settings, "chat.feedback"))
