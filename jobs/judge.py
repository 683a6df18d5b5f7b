"""``continuum judge``: online LLM-as-judge on live chat turns.

    chat.turns ─▶ sample (hash of the turn id < rate) ─▶ per-model token budget ─▶ rubric prompt
      ─▶ inference.requests.background (low-priority lane, same workers) ─▶ the worker's answer on
      inference.responses.background ─▶ parse ─▶ JudgeScore on judge.scores

Exactly once for the streams: a score's id is ``stable_id("judge", turn_id)`` and its request id
``stable_id("judge-request", turn_id, attempt)``, so a turn redelivered after a crash (its offset
is committed only once its score is acknowledged) is judged again under the same ids and counted
once. A judge answer that is not the rubric is asked again once with a stricter prompt, then
recorded as ``unparseable`` with the answer attached; a request with no answer (engine error, or
the lane starved past the deadline) is recorded as ``failed``. Nothing sampled is dropped
silently.

Calibration: the service also reads ``chat.feedback`` and pairs users' ratings with its own
scores of the same turns (:class:`Calibration`), served at ``/calibration`` with ``/metrics``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import OFFSET_END, KafkaException, TopicPartition
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from scipy import stats

from continuum import kafka as clients
from continuum.settings import Settings
from continuum.topics import topic_spec
from jobs.rubric import (
    RUBRIC_SCHEMA,
    RUBRIC_VERSION,
    RubricError,
    TokenBudget,
    Verdict,
    estimate_tokens,
    parse_verdict,
    pii_in_answer,
    rubric_messages,
    sampled,
)
from producers.consumer import consume_available
from producers.producer import EventProducer
from producers.schema_topic import decoder_for
from schemas.errors import DecodeError
from schemas.ids import stable_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeConfig:
    sample_rate: float = 0.05  # share of turns judged
    tokens_per_minute: float = 20_000  # per model version (prompt + answer); 0: no limit
    max_tokens: int = 160  # of a judge answer
    timeout_s: float = 300.0  # deadline of a judge request (background work may wait)
    max_pending: int = 64  # judge requests in flight before turns wait in Kafka
    model: str | None = None  # the judge model version (None: any worker)
    group_id: str = "continuum-judge"
    commit_every_s: float = 1.0


def now_ms() -> int:
    return int(time.time() * 1000)


def judge_request(turn: Mapping[str, Any], attempt: int, cfg: JudgeConfig, reply_topic: str):
    """The InferenceRequest judging ``turn`` (attempt 2: the stricter prompt)."""
    t = now_ms()
    rid = stable_id("judge-request", turn["event_id"], attempt)
    return {
        "event_id": stable_id("judge-request-event", turn["event_id"], attempt),
        "event_time": t,
        "request_id": rid,
        "session_id": turn["session_id"],
        "messages": [{**m, "name": None} for m in rubric_messages(turn, strict=attempt > 1)],
        "sampling": {
            "max_tokens": cfg.max_tokens,
            "temperature": 0.0,
            "top_p": 1.0,
            "stop": [],
            "seed": 0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
        },
        "model": cfg.model,
        "experiment_id": None,
        "variant": None,
        "reply_topic": reply_topic,
        "deadline": t + int(cfg.timeout_s * 1000),
        "metadata": {"lane": "background", "purpose": "judge", "turn_id": turn["event_id"]},
        "stream": False,
        "response_format": json.dumps(RUBRIC_SCHEMA),
    }


def score_event(
    turn: Mapping[str, Any],
    *,
    status: str,
    cfg: JudgeConfig,
    attempts: int,
    verdict: Verdict | None = None,
    reason: str = "",
    raw: str | None = None,
    judge_model: str = "",
) -> dict[str, Any]:
    return {
        "event_id": stable_id("judge", turn["event_id"]),
        "event_time": turn["event_time"],
        "judged_at": now_ms(),
        "turn_id": turn["event_id"],
        "session_id": turn["session_id"],
        "model_version": turn["model_version"],
        "experiment_id": turn.get("experiment_id"),
        "variant": turn.get("variant"),
        "intent": turn.get("intent"),
        "status": status,
        "score": verdict.score if verdict else None,
        "scores": dict(verdict.scores) if verdict else {},
        "reason": verdict.reason if verdict else reason,
        "raw": raw[:500] if raw is not None else None,
        "attempts": attempts,
        "judge_model": judge_model,
        "rubric_version": RUBRIC_VERSION,
        "sample_rate": cfg.sample_rate,
        "pii_in_answer": pii_in_answer(turn),
    }


class Calibration:
    """Agreement of the judge with users where both spoke about a turn: the judge's score of a
    turn paired with the user's feedback on it (rating >= 4 or thumbs up: satisfied, the seed's
    rule). Recent scores and feedback are remembered by turn id, whichever comes first."""

    def __init__(self, remember: int = 50_000, keep_pairs: int = 5_000) -> None:
        self.scores: OrderedDict[str, float] = OrderedDict()
        self.feedback: OrderedDict[str, tuple[bool, float | None]] = OrderedDict()
        self.pairs: list[tuple[float, bool, float | None]] = []
        self.remember, self.keep_pairs = remember, keep_pairs
        self.lock = threading.Lock()

    def _pair(self, score: float, satisfied: bool, rating: float | None) -> None:
        self.pairs.append((score, satisfied, rating))
        del self.pairs[: -self.keep_pairs]

    def add_score(self, turn_id: str, score: float) -> None:
        with self.lock:
            fb = self.feedback.pop(turn_id, None)
            if fb is not None:
                self._pair(score, *fb)
                return
            self.scores[turn_id] = score
            while len(self.scores) > self.remember:
                self.scores.popitem(last=False)

    def add_feedback(self, turn_id: str, satisfied: bool, rating: float | None) -> None:
        with self.lock:
            score = self.scores.pop(turn_id, None)
            if score is not None:
                self._pair(score, satisfied, rating)
                return
            self.feedback[turn_id] = (satisfied, rating)
            while len(self.feedback) > self.remember:
                self.feedback.popitem(last=False)

    def report(self, threshold: float = 0.5) -> dict[str, Any]:
        """Pairs, the judge's mean score on satisfied and unsatisfied turns, agreement (the score
        on the same side of ``threshold`` as the user), and Spearman's rho with 1..5 ratings."""
        with self.lock:
            pairs = list(self.pairs)
        out: dict[str, Any] = {"pairs": len(pairs), "threshold": threshold}
        if not pairs:
            return {**out, "agreement": None, "spearman_rho": None}
        sat = [s for s, ok, _ in pairs if ok]
        unsat = [s for s, ok, _ in pairs if not ok]
        out["mean_score_satisfied"] = sum(sat) / len(sat) if sat else None
        out["mean_score_unsatisfied"] = sum(unsat) / len(unsat) if unsat else None
        out["agreement"] = sum((s >= threshold) == ok for s, ok, _ in pairs) / len(pairs)
        rated = [(s, r) for s, _, r in pairs if r is not None]
        rho = None
        if len(rated) >= 10 and len({r for _, r in rated}) > 1 and len({s for s, _ in rated}) > 1:
            rho = float(stats.spearmanr([s for s, _ in rated], [r for _, r in rated]).statistic)
        out["spearman_rho"] = rho
        out["rated_pairs"] = len(rated)
        return out


@dataclass
class _Pending:
    turn: dict[str, Any]
    attempt: int
    at: tuple[str, int, int]  # topic, partition, offset of the turn
    sent_s: float


class JudgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.seen = Counter("continuum_judge_turns_seen_total", "Turns read", registry=r)
        self.sampled = Counter("continuum_judge_turns_sampled_total", "Turns sampled", registry=r)
        self.over_budget = Counter(
            "continuum_judge_over_budget_total",
            "Sampled turns not judged: the model's token budget was spent",
            ["model_version"],
            registry=r,
        )
        self.scores = Counter(
            "continuum_judge_scores_total", "Scores written", ["status"], registry=r
        )
        self.retries = Counter(
            "continuum_judge_retries_total", "Judge answers asked again", registry=r
        )
        self.score = Histogram(
            "continuum_judge_score",
            "Judged quality 0..1",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
            registry=r,
        )


class JudgeService:
    def __init__(
        self,
        settings: Settings,
        config: JudgeConfig | None = None,
        *,
        producer: EventProducer | None = None,
        metrics: JudgeMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = config or JudgeConfig()
        p = settings.topic_prefix
        self.turns_topic = topic_spec("chat.turns").full_name(p)
        self.feedback_topic = topic_spec("chat.feedback").full_name(p)
        self.requests_topic = topic_spec("inference.requests.background").full_name(p)
        self.reply_topic = topic_spec("inference.responses.background").full_name(p)
        self.scores_topic = topic_spec("judge.scores").full_name(p)
        self.producer = producer or EventProducer.from_settings(settings)
        self.decoder = decoder_for(settings)
        self.metrics = metrics or JudgeMetrics()
        self.budget = TokenBudget(self.cfg.tokens_per_minute)
        self.calibration = Calibration()
        self.pending: dict[str, _Pending] = {}
        self.open: dict[tuple[str, int], set[int]] = {}  # turn offsets not yet settled
        self.seen: dict[tuple[str, int], int] = {}  # highest turn offset read per partition
        self.undelivered: list[tuple[_Pending, dict[str, Any]]] = []
        self.commit_failing = False
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.written = 0
        self._last_commit = 0.0

    # -- turns -------------------------------------------------------------------------------

    def on_turn(self, turn: dict[str, Any], at: tuple[str, int, int]) -> None:
        self.metrics.seen.inc()
        tp = at[:2]
        self.seen[tp] = max(self.seen.get(tp, -1), at[2])
        if not sampled(turn["event_id"], self.cfg.sample_rate):
            return
        self.metrics.sampled.inc()
        cost = self.cfg.max_tokens + sum(
            estimate_tokens(m["content"]) for m in rubric_messages(turn)
        )
        if not self.budget.take(turn["model_version"], cost):
            self.metrics.over_budget.labels(turn["model_version"]).inc()
            return
        self._ask(turn, 1, at)

    def _ask(self, turn: dict[str, Any], attempt: int, at: tuple[str, int, int]) -> None:
        request = judge_request(turn, attempt, self.cfg, self.reply_topic)
        if request["request_id"] in self.pending:
            return  # the same turn redelivered while it is being judged
        self.pending[request["request_id"]] = _Pending(turn, attempt, at, time.monotonic())
        self.open.setdefault(at[:2], set()).add(at[2])
        self.producer.send(
            "InferenceRequest",
            request,
            topic=self.requests_topic,
            key=turn["session_id"],
            prepare=False,
        )

    # -- answers -----------------------------------------------------------------------------

    def on_response(self, response: Mapping[str, Any]) -> None:
        p = self.pending.pop(str(response.get("request_id")), None)
        if p is None:
            return  # another judge instance's, or already settled
        error = response.get("error")
        text = str(response.get("text") or "")
        verdict, status, reason, raw = None, "ok", "", None
        if error:
            status, reason = "failed", f"{error.get('type')}: {error.get('message')}"
        else:
            try:
                verdict = parse_verdict(text)
            except RubricError as exc:
                status, reason, raw = "unparseable", str(exc), text
        if verdict is None and p.attempt == 1:  # once more (a stricter prompt), then record it
            self.metrics.retries.inc()
            self._ask(p.turn, 2, p.at)
            return
        event = score_event(
            p.turn,
            status=status,
            cfg=self.cfg,
            attempts=p.attempt,
            verdict=verdict,
            reason=reason,
            raw=raw,
            judge_model=str(response.get("model_version") or ""),
        )
        self._settle(p, event)
        if verdict is not None:
            self.calibration.add_score(p.turn["event_id"], verdict.score)
            self.metrics.score.observe(verdict.score)

    def _settle(self, p: _Pending, event: dict[str, Any]) -> None:
        """Write the score; its turn's offset is released only once the broker acknowledged it
        (a score refused after the producer's retries is written again, same id)."""

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                self.open.get(p.at[:2], set()).discard(p.at[2])
            else:
                self.undelivered.append((p, event))

        self.producer.send(
            "JudgeScore",
            event,
            topic=self.scores_topic,
            key=event["session_id"],
            on_delivery=delivered,
        )
        self.metrics.scores.labels(event["status"]).inc()
        self.written += 1

    def resend(self) -> None:
        """Scores the broker did not take (an outage longer than the producer's retries)."""
        todo, self.undelivered = self.undelivered, []
        if todo:
            log.warning("judge: writing %d score(s) again after a failed delivery", len(todo))
        for p, event in todo:
            self._settle(p, event)

    def sweep(self) -> None:
        """Requests with no answer well past their deadline (a worker gone, a lost reply): asked
        again once, then recorded as failed."""
        limit = self.cfg.timeout_s + 30.0
        now = time.monotonic()
        for rid, p in list(self.pending.items()):
            if now - p.sent_s > limit:
                self.on_response(
                    {"request_id": rid, "error": {"type": "timeout", "message": "no answer"}}
                )

    # -- feedback ----------------------------------------------------------------------------

    def on_feedback(self, fb: Mapping[str, Any]) -> None:
        turn_id = fb.get("turn_event_id")
        if not turn_id:
            return
        rating = fb.get("rating")
        satisfied = (rating is not None and rating >= 4) or fb.get("thumbs") == "UP"
        self.calibration.add_feedback(str(turn_id), satisfied, rating)

    # -- offsets -----------------------------------------------------------------------------

    def committable(self) -> list[TopicPartition]:
        """Per partition: the lowest turn offset still being judged, or one past the last read:
        a restart re-reads only what has no acknowledged score yet."""
        out = []
        for tp, last in self.seen.items():
            waiting = self.open.get(tp)
            out.append(TopicPartition(tp[0], tp[1], min(waiting) if waiting else last + 1))
        return out

    def commit(self, consumer: Any) -> None:
        """Commit below every score not yet acknowledged (see :meth:`committable`). While Kafka
        is away the commit fails every round: logged once, and once when it works again."""
        offsets = self.committable()
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if not self.commit_failing:
                log.warning("judge: offset commit failed (retried every round): %s", exc)
            self.commit_failing = True
            return
        if self.commit_failing:
            log.warning("judge: offsets committed again")
        self.commit_failing = False

    # -- the loop ----------------------------------------------------------------------------

    def _decode(self, value: bytes | None, schema: str) -> dict[str, Any] | None:
        try:
            return self.decoder.decode(value or b"", schema).record
        except DecodeError as exc:
            log.warning("judge: skipped an undecodable %s (%s)", schema, exc.reason)
            return None

    def run(self) -> None:
        s = self.settings
        turns = clients.consumer(
            s,
            f"{s.topic_prefix}{self.cfg.group_id}",
            {
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            },
        )
        feedback = clients.consumer(
            s,
            f"{s.topic_prefix}{self.cfg.group_id}-feedback",
            {"enable.auto.commit": True},  # calibration is a best-effort report
        )
        replies = clients.consumer(
            s, f"{s.topic_prefix}{self.cfg.group_id}-replies", {"enable.auto.commit": False}
        )
        parts = topic_spec("inference.responses.background").partitions
        replies.assign([TopicPartition(self.reply_topic, i, OFFSET_END) for i in range(parts)])
        turns.subscribe([self.turns_topic])
        feedback.subscribe([self.feedback_topic])
        log.info(
            "judge: %.1f%% of turns, %s tokens/min per model, on %s",
            self.cfg.sample_rate * 100,
            self.cfg.tokens_per_minute or "unlimited",
            self.requests_topic,
        )
        self.ready.set()
        try:
            while not self.stop_event.is_set():
                if len(self.pending) < self.cfg.max_pending:
                    for m in consume_available(turns, self.cfg.max_pending, 0.05):
                        if m.error() or m.value() is None:
                            continue
                        turn = self._decode(m.value(), "ChatTurn")
                        at = (m.topic(), m.partition(), m.offset())
                        if turn is None:
                            self.seen[at[:2]] = max(self.seen.get(at[:2], -1), at[2])
                            continue
                        self.on_turn(turn, at)
                for m in consume_available(replies, 200, 0.05):
                    if not m.error() and m.value() is not None:
                        rec = self._decode(m.value(), "InferenceResponse")
                        if rec is not None:
                            self.on_response(rec)
                for m in consume_available(feedback, 200, 0.0):
                    if not m.error() and m.value() is not None:
                        rec = self._decode(m.value(), "Feedback")
                        if rec is not None:
                            self.on_feedback(rec)
                self.producer.poll(0)
                self.resend()
                self.sweep()
                if time.monotonic() - self._last_commit >= self.cfg.commit_every_s:
                    self.commit(turns)
                    self._last_commit = time.monotonic()
        finally:
            self.producer.flush(30)
            self.commit(turns)
            for c in (turns, feedback, replies):
                c.close()
            self.producer.close(raise_on_failure=False)
            log.info("judge stopped: %d scores written", self.written)


def serve_http(
    service: JudgeService, host: str, port: int
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """``/health``, ``/metrics`` and ``/calibration`` (the judge's agreement with users)."""
    routes: dict[str, Callable[[], tuple[str, bytes]]] = {
        "/health": lambda: (
            "application/json",
            json.dumps({"ready": service.ready.is_set(), "pending": len(service.pending)}).encode(),
        ),
        "/metrics": lambda: (CONTENT_TYPE_LATEST, generate_latest(service.metrics.registry)),
        "/calibration": lambda: (
            "application/json",
            json.dumps(service.calibration.report()).encode(),
        ),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            route = routes.get(self.path.rstrip("/") or "/")
            if route is None:
                self.send_error(404, f"no such view: {self.path}")
                return
            ctype, body = route()
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="judge-http", daemon=True)
    thread.start()
    return server, thread
