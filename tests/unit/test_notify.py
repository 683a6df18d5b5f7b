"""Alert delivery's pure parts: Block Kit, collapsing bursts, retry policy."""

from __future__ import annotations

import json
import random

from jobs.notify import (
    RetryPolicy,
    classify,
    collapse,
    json_message,
    parse_retry_after,
    slack_message,
)
from tests.examples import EXAMPLES


def alert(n: int, key: str = "drift:okla-v2.0:latency", **kw):
    return {**EXAMPLES["Alert"], "event_id": f"e{n}", "dedup_key": key, **kw}


def test_slack_message_has_title_severity_signals_and_recommendation():
    a = alert(
        1,
        severity="CRITICAL",
        title="Latency p95 up 80%",
        status="OPEN",
        signals=[
            {
                "name": "latency_p95_increase",
                "current": 3000.0,
                "baseline": 1800.0,
                "threshold": 0.5,
            }
        ],
        recommendation="Revisa el servidor de inferencia.",
    )
    [batch] = collapse([a])
    msg = slack_message(batch)
    text = json.dumps(msg, ensure_ascii=False)
    assert msg["blocks"][0]["type"] == "header"
    assert "[CRITICAL] Latency p95 up 80%" in msg["blocks"][0]["text"]["text"]
    assert "*latency_p95_increase*: 3000 (baseline 1800, threshold 0.5)" in text
    assert "Revisa el servidor de inferencia." in text
    assert msg["text"].endswith("Latency p95 up 80%")  # the notification fallback text


def test_bursts_of_one_key_collapse_into_one_message_keeping_order():
    batches = collapse([alert(1), alert(2, key="b"), alert(3), alert(4)])
    assert [b.key for b in batches] == ["drift:okla-v2.0:latency", "b"]
    assert batches[0].event_ids == ["e1", "e3", "e4"] and batches[0].latest["event_id"] == "e4"
    assert "2 earlier update(s) of this alert collapsed" in json.dumps(slack_message(batches[0]))
    assert json_message(batches[0])["collapsed"] == 2


def test_resolved_alert_has_no_recommendation():
    [batch] = collapse([alert(1, status="RESOLVED", recommendation="do x")])
    text = json.dumps(slack_message(batch))
    assert ":white_check_mark:" in text and "do x" not in text


def test_retry_policy_and_classification():
    p = RetryPolicy(base_s=1, cap_s=8)
    rng = random.Random(1)
    delays = [p.delay(a, rng=rng) for a in range(1, 8)]
    assert all(0.5 <= d <= 8 for d in delays) and delays[-1] >= 4  # capped, growing
    assert p.delay(1, retry_after=7) == 7
    assert p.delay(1, retry_after=10_000) == p.retry_after_cap_s
    assert [classify(s) for s in (200, 204, 429, 500, 503, 408, None, 400, 403, 404)] == [
        "ok",
        "ok",
        "retry",
        "retry",
        "retry",
        "retry",
        "retry",
        "fatal",
        "fatal",
        "fatal",
    ]
    assert parse_retry_after("3") == 3.0 and parse_retry_after("Wed, 21 Oct 2015") is None
