"""``continuum alerts slack|webhook``: the alerts topic -> a Slack incoming webhook (Block Kit) or a
generic JSON webhook.

Never loses an alert and never posts one twice:
- offsets are committed only after every alert of a poll was delivered (or dead-lettered);
- the ids of delivered alerts are written to a local SQLite file right after the webhook accepted
  them and before the commit, so alerts redelivered after a crash are recognised and skipped;
- 429 waits ``Retry-After``; 5xx, 408 and timeouts are retried with capped exponential backoff;
- a burst of updates of one alert (same dedup key) in a poll becomes one message;
- after ``max_attempts`` failures (or a 4xx that retrying cannot fix) the alerts go to
  ``alerts.dlq`` with the reason, and an alert about the failing delivery is raised (once per
  outage, never about itself).
The webhook URL is a secret: it is never logged or put in an error message.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import KafkaError, KafkaException

from continuum import kafka as clients
from continuum.settings import Settings
from continuum.topics import topic_spec
from jobs.notify import (
    Batch,
    RetryPolicy,
    classify,
    collapse,
    json_message,
    parse_retry_after,
    slack_message,
)
from producers.consumer import consume_available
from producers.deadletter import DeadLetterQueue, SafeDecoder
from producers.producer import EventProducer
from producers.schema_topic import decoder_for
from streams.logic.alerts import raise_request, resolve_request

log = logging.getLogger(__name__)

SOURCE = "alert-consumer"


class DeliveredStore:
    """Ids of alert events already delivered, kept across restarts (SQLite, one file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS delivered ("
            " event_id TEXT PRIMARY KEY, target TEXT, dedup_key TEXT, at_ms INTEGER)"
        )

    def seen(self, target: str, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            f"SELECT event_id FROM delivered WHERE target = ? AND event_id IN ({marks})",
            [target, *ids],
        )
        return {r[0] for r in rows}

    def add(self, target: str, batch: Batch) -> None:
        now = int(time.time() * 1000)
        self.db.executemany(
            "INSERT OR IGNORE INTO delivered VALUES (?, ?, ?, ?)",
            [(eid, target, batch.key, now) for eid in batch.event_ids],
        )

    def prune(self, older_than_ms: int) -> int:
        return self.db.execute("DELETE FROM delivered WHERE at_ms < ?", [older_than_ms]).rowcount

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM delivered").fetchone()[0]

    def close(self) -> None:
        self.db.close()


@dataclass(frozen=True)
class Target:
    name: str  # slack | webhook
    url: str  # secret
    format: Callable[[Batch], dict[str, Any]]

    @classmethod
    def of(cls, kind: str, url: str) -> Target:
        if not url:
            var = "CONTINUUM_SLACK_WEBHOOK_URL" if kind == "slack" else "CONTINUUM_WEBHOOK_URL"
            raise ValueError(f"no {kind} webhook URL: set {var}")
        if kind == "slack":
            return cls("slack", url, slack_message)
        if kind == "webhook":
            return cls("webhook", url, json_message)
        raise ValueError(f"unknown alert target {kind!r}; expected 'slack' or 'webhook'")


@dataclass
class Outcome:
    ok: bool
    attempts: int
    reason: str = ""


class AlertDelivery:
    def __init__(
        self,
        settings: Settings,
        target: Target,
        *,
        state_path: Path | None = None,
        group_id: str | None = None,
        policy: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        producer: EventProducer | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """``before_commit`` runs after delivery and before the offset commit (tests use it to
        stand in for a crash at the worst moment)."""
        self.settings = settings
        self.target = target
        self.policy = policy or RetryPolicy()
        self.store = DeliveredStore(
            state_path or settings.home / f"alerts-delivered-{target.name}.sqlite"
        )
        self.topic = topic_spec("alerts").full_name(settings.topic_prefix)
        self.producer = producer or EventProducer.from_settings(settings)
        self.dlq = DeadLetterQueue(self.producer.dead_letter_sink)
        self.decoder = SafeDecoder(decoder_for(settings), self.dlq)
        self.consumer = clients.consumer(
            settings,
            group_id or f"continuum-alerts-{target.name}",
            {"session.timeout.ms": 10_000},
        )
        self.consumer.subscribe([self.topic])
        # httpx logs every request line, URL included; the URL is a secret.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.http = httpx.Client(timeout=timeout_s)
        self.before_commit = before_commit
        self.stop_event = threading.Event()
        self.delivery_failing = False
        self.delivery_key = f"delivery:{target.name}"
        self.posted = 0
        self.skipped = 0
        self.dead_lettered = 0

    # -- one message -------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self.target.url, "<webhook-url>")

    def post(self, batch: Batch) -> Outcome:
        body = self.target.format(batch)
        attempt = 0
        reason = ""
        while not self.stop_event.is_set():
            attempt += 1
            retry_after = None
            try:
                resp = self.http.post(self.target.url, json=body)
                status: int | None = resp.status_code
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                reason = f"HTTP {status}: {self._redact(resp.text[:200])}"
            except httpx.HTTPError as exc:  # timeouts, refused connections
                status = None
                reason = f"{type(exc).__name__}: {self._redact(str(exc))}"
            verdict = classify(status)
            if verdict == "ok":
                return Outcome(True, attempt)
            if verdict == "fatal":
                return Outcome(False, attempt, f"{self.target.name} refused the message: {reason}")
            if attempt >= self.policy.max_attempts and status != 429:
                return Outcome(False, attempt, f"gave up after {attempt} attempts: {reason}")
            if status == 429 and attempt >= self.policy.max_attempts * 4:
                return Outcome(False, attempt, f"still rate-limited after {attempt} attempts")
            wait = self.policy.delay(attempt, retry_after if status == 429 else None)
            log.warning(
                "alert delivery to %s failed (%s); retry in %.1fs", self.target.name, reason, wait
            )
            self.stop_event.wait(wait)
        return Outcome(False, attempt, "stopping")

    # -- the loop ----------------------------------------------------------------------------

    def poll_once(self, timeout: float = 1.0) -> int:
        """Consume, deliver and commit one poll; returns how many alerts it handled."""
        msgs = consume_available(self.consumer, 200, timeout)
        records: list[tuple[Any, dict[str, Any]]] = []
        for m in msgs:
            if m.error():
                if m.error().fatal():
                    raise KafkaException(m.error())
                continue
            rec = self.decoder.decode(
                m.topic(),
                m.key(),
                m.value(),
                expected="Alert",
                partition=m.partition(),
                offset=m.offset(),
            )
            if rec is not None:
                records.append((m, rec))
        if not msgs:
            return 0
        done = self.store.seen(self.target.name, (r["event_id"] for _, r in records))
        self.skipped += len(done)
        fresh = [(m, r) for m, r in records if r["event_id"] not in done]
        by_id = {r["event_id"]: m for m, r in fresh}
        for batch in collapse([r for _, r in fresh]):
            outcome = self.post(batch)
            if outcome.ok:
                self.store.add(self.target.name, batch)
                self.posted += 1
                if self.delivery_failing:
                    self.delivery_failing = False
                    log.warning("alert delivery to %s recovered", self.target.name)
                    self.producer.send(
                        "Alert",
                        resolve_request(
                            self.delivery_key,
                            int(time.time() * 1000),
                            f"alerts are delivered to {self.target.name} again",
                            source=SOURCE,
                        ),
                        topic="alert-requests",
                    )
                continue
            if outcome.reason == "stopping":
                return 0  # nothing committed: the next run delivers these
            for eid in batch.event_ids:
                m = by_id[eid]
                self.dlq.send(
                    m.topic(),
                    m.key(),
                    m.value(),
                    f"alert not delivered to {self.target.name}: {outcome.reason}",
                    partition=m.partition(),
                    offset=m.offset(),
                    schema="Alert",
                )
                self.dead_lettered += 1
            self._delivery_alert(batch, outcome)
        if self.dlq.counts or self.producer.pending:
            # Dead letters and requests wait in the producer while Kafka is away (its message
            # timeout, 5 min); nothing is committed before they are acknowledged.
            remaining = self.producer.flush(330)
            if remaining:
                raise RuntimeError(f"{remaining} dead letter(s) not acknowledged; not committing")
        if self.before_commit is not None:
            self.before_commit()
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise
            if err.code() != KafkaError._NO_OFFSET:
                # Kafka away or the group forgot this member: the delivered store already holds
                # these alerts, so a re-delivery is skipped; the next commit covers them.
                log.warning("alert consumer: offsets not committed (%s); carrying on", err.str())
        return len(records)

    def _delivery_alert(self, batch: Batch, outcome: Outcome) -> None:
        if batch.latest.get("source") == SOURCE:
            return  # never alert about failing to deliver an alert about delivery
        # A request to the alert owner (the streams workers), which de-duplicates: one alert
        # per outage (a reminder after the cool-down), resolved in poll_once when a delivery
        # succeeds again.
        self.delivery_failing = True
        request = raise_request(
            "SERVICE_DOWN",
            "HIGH",
            self.delivery_key,
            f"Alert delivery to {self.target.name} is failing",
            int(time.time() * 1000),
            message=f"{outcome.reason}; undelivered alerts are on {self.topic}.dlq",
            recommendation="Check the webhook (URL, token, the service's status) and replay "
            "the dead-lettered alerts once it is back.",
            source=SOURCE,
            details={"attempts": str(outcome.attempts), "dead_lettered": str(self.dead_lettered)},
        )
        self.producer.send("Alert", request, topic="alert-requests")

    def run(self) -> None:
        log.info("delivering %s to %s", self.topic, self.target.name)
        try:
            while not self.stop_event.is_set():
                self.poll_once(0.5)
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.http.close()
            self.producer.close(raise_on_failure=False)
            self.store.close()
