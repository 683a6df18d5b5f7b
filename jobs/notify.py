"""Pure parts of alert delivery: message formats, collapsing bursts, and the retry policy.

No network and no Kafka here; ``jobs.alert_consumer`` drives these against a webhook.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SEVERITY_ICON = {
    "CRITICAL": ":red_circle:",
    "HIGH": ":large_orange_circle:",
    "MEDIUM": ":large_yellow_circle:",
    "LOW": ":large_blue_circle:",
    "INFO": ":white_circle:",
}


@dataclass(frozen=True)
class Batch:
    """The alerts of one dedup key inside one poll, posted as one message (the newest wins;
    the others are counted in it)."""

    key: str
    alerts: tuple[dict[str, Any], ...]

    @property
    def latest(self) -> dict[str, Any]:
        return self.alerts[-1]

    @property
    def event_ids(self) -> list[str]:
        return [a["event_id"] for a in self.alerts]


def collapse(alerts: Sequence[Mapping[str, Any]]) -> list[Batch]:
    """Group a burst by ``dedup_key``, keeping first-seen order of keys."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        groups.setdefault(str(a.get("dedup_key") or a["event_id"]), []).append(dict(a))
    return [Batch(k, tuple(v)) for k, v in groups.items()]


def _num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def signal_lines(signals: Iterable[Mapping[str, Any]]) -> list[str]:
    out = []
    for s in signals:
        line = f"• *{s.get('name')}*: {_num(s.get('current'))} (baseline {_num(s.get('baseline'))}"
        if s.get("threshold") is not None:
            line += f", threshold {_num(s.get('threshold'))}"
        out.append(line + ")")
    return out


def what_changed(details: Mapping[str, Any], top: int = 3) -> list[str]:
    """The signal's largest contributions (``why.1`` ...), one bullet each."""
    return [f"• {details[k]}" for i in range(1, top + 1) if (k := f"why.{i}") in details]


def slack_message(batch: Batch) -> dict[str, Any]:
    """Slack Block Kit: title with severity, the facts, the signals current vs baseline, and the
    recommendation."""
    a = batch.latest
    resolved = a.get("status") == "RESOLVED"
    icon = ":white_check_mark:" if resolved else SEVERITY_ICON.get(a.get("severity", ""), "")
    title = f"{icon} [{a.get('severity')}] {a.get('title')}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Type*\n{a.get('alert_type')}"},
                {"type": "mrkdwn", "text": f"*Severity*\n{a.get('severity')}"},
                {"type": "mrkdwn", "text": f"*Status*\n{a.get('status')}"},
                {"type": "mrkdwn", "text": f"*Model*\n{a.get('model_version') or '—'}"},
            ],
        },
    ]
    if a.get("message"):
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": str(a["message"])[:2900]}}
        )
    lines = signal_lines(a.get("signals") or [])
    if lines:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*Signals*\n" + "\n".join(lines)[:2900]},
            }
        )
    why = what_changed(a.get("details") or {})
    if why and not resolved:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*What changed*\n" + "\n".join(why)[:2900]},
            }
        )
    if a.get("recommendation") and not resolved:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Recommendation*\n{a['recommendation']}"},
            }
        )
    context = f"alert `{a.get('alert_id')}` · key `{batch.key}` · source {a.get('source')}"
    if len(batch.alerts) > 1:
        context += f" · {len(batch.alerts) - 1} earlier update(s) of this alert collapsed"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": title, "blocks": blocks}


def json_message(batch: Batch) -> dict[str, Any]:
    """The generic webhook body: the newest alert and how many updates it stands for."""
    return {"alert": batch.latest, "collapsed": len(batch.alerts) - 1, "dedup_key": batch.key}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; ``Retry-After`` from a 429 is obeyed as is."""

    max_attempts: int = 8
    base_s: float = 0.5
    cap_s: float = 30.0
    retry_after_cap_s: float = 300.0

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap_s)
        r = (rng or random).random()
        return min(self.cap_s, self.base_s * 2 ** (attempt - 1)) * (0.5 + r / 2)


def classify(status: int | None) -> str:
    """``ok``, ``retry`` (429, 5xx, no answer) or ``fatal`` (other 4xx: the message or URL is
    wrong; retrying will not help)."""
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "ok"
    if status == 429 or status >= 500 or status == 408:
        return "retry"
    return "fatal"


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
