"""OpenAI-compatible gateway: ``POST /v1/chat/completions`` over Kafka.

A call becomes an ``InferenceRequest`` on ``inference.requests`` (keyed by session, with a
deadline), the gateway waits for the ``InferenceResponse`` with the same request id on its reply
topic and returns it in OpenAI's shape: a drop-in for the chatbot seed's LLM server. The first
response for a request id wins; a second one (a worker that crashed after producing and before
committing answers again) is counted and dropped, so a client gets each answer exactly once.

Running A/B experiments are read from the compacted ``experiments`` topic; a call that names no
model (or the experiment's control model) is routed to a variant by the experiment's assignment
strategy, sticky by session by default, and carries ``experiment_id`` / ``variant`` downstream.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from continuum.settings import Settings
from continuum.topics import topic_spec
from inference.auth import ApiKeys
from inference.gateway_stream import StreamCall
from inference.lanes import BACKGROUND, BACKGROUND_TOPIC, USER, lane_of_call
from inference.metrics import DURATION_BUCKETS_MS
from inference.protocol import (
    ERR_INVALID,
    ERR_OVERLOADED,
    ERR_TIMEOUT,
    InvalidRequest,
    now_ms,
    openai_error,
    openai_from_response,
    request_from_openai,
)
from inference.routing import ReplyListener, VariantRouter
from inference.streaming import (
    cancel_event,
)
from producers.producer import LOW_LATENCY_PRODUCER, EventProducer
from schemas.ids import RecentIds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "0.0.0.0"
    port: int = 8000
    reply_topic: str = "inference.replies"  # logical name (prefixed) or a literal topic
    timeout_s: float = 30.0  # the dispatch seed's service timeout
    max_pending: int = 1000
    models: tuple[str, ...] = ()  # advertised on /v1/models before any answer was seen
    follow_experiments: bool = True


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        # process_* (RSS/VMS, CPU, open fds): the seed's system-resources panels read these.
        ProcessCollector(registry=r)
        p = "continuum_gateway"
        self.requests = Counter(f"{p}_requests_total", "Calls received", ["status"], registry=r)
        self.duplicates = Counter(
            f"{p}_duplicate_responses_total",
            "Responses for a request already answered or no longer waited for (dropped)",
            registry=r,
        )
        self.pending = Gauge(f"{p}_pending_requests", "Calls waiting for an answer", registry=r)
        self.latency = Histogram(
            f"{p}_response_duration_ms",
            "Call latency in ms",
            buckets=DURATION_BUCKETS_MS,
            registry=r,
        )
        self.refused = Counter(
            f"{p}_refused_total",
            "Calls refused before reaching Kafka: missing_key, wrong_key (401), rate_limited (429)",
            ["reason"],
            registry=r,
        )
        self.by_key = Counter(
            f"{p}_key_requests_total", "Calls admitted, by API key name", ["key"], registry=r
        )
        self.ttft = Histogram(
            f"{p}_time_to_first_token_ms",
            "Streamed calls: from the call to its first text sent to the client, in ms",
            buckets=DURATION_BUCKETS_MS,
            registry=r,
        )
        self.others = Counter(
            f"{p}_other_replies_total",
            "Answers on the reply topic to calls of another gateway: skipped by their request-id "
            "header, not decoded",
            registry=r,
        )
        self.streams = Counter(
            f"{p}_streams_total",
            "Streamed calls by how they ended: done, error, timeout, broken, disconnected",
            ["outcome"],
            registry=r,
        )


class Gateway:
    def __init__(
        self,
        settings: Settings,
        config: GatewayConfig | None = None,
        *,
        producer: EventProducer | None = None,
        keys: ApiKeys | None = None,
    ) -> None:
        """``keys``: the API keys callers must present (None or none configured: open)."""
        self.settings = settings
        self.config = config or GatewayConfig()
        self.keys = keys
        self.producer = producer or EventProducer.from_settings(
            settings, config=LOW_LATENCY_PRODUCER
        )
        self.requests_topic = topic_spec("inference.requests").full_name(settings.topic_prefix)
        self.background_topic = topic_spec(BACKGROUND_TOPIC).full_name(settings.topic_prefix)
        try:
            self.reply_topic = topic_spec(self.config.reply_topic).full_name(settings.topic_prefix)
        except KeyError:
            self.reply_topic = self.config.reply_topic
        self.router = VariantRouter()
        self.metrics = GatewayMetrics()
        self.models: dict[str, float] = {m: time.time() for m in self.config.models}
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._streams: dict[str, asyncio.Queue[tuple[str, dict[str, Any]]]] = {}
        # Recently answered request ids: a repeat of one is a duplicate, not another gateway's.
        self._answered = RecentIds(10_000)
        self.cancels_topic = topic_spec("inference.cancels").full_name(settings.topic_prefix)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listener: ReplyListener | None = None
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self.started = time.time()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.listener = ReplyListener(self.settings, self.reply_topic, self)
        self.listener.start()
        await self._loop.run_in_executor(None, self.listener.ready.wait, 30)
        if self.listener.error is not None:
            raise RuntimeError(f"gateway cannot read replies: {self.listener.error}")
        self._poller = threading.Thread(target=self._poll_producer, daemon=True)
        self._poller.start()

    async def stop(self) -> None:
        self._stop.set()
        if self.listener is not None:
            self.listener.stop_event.set()
            self.listener.join(5)
        if self._poller is not None:
            self._poller.join(5)
        self.producer.close(raise_on_failure=False)

    def _poll_producer(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    # -- answers -----------------------------------------------------------------------------

    def deliver(self, response: dict[str, Any]) -> None:
        """Called from the listener thread for every response on the reply topic."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._resolve, response)

    def deliver_chunk(self, chunk: dict[str, Any]) -> None:
        """Called from the listener thread for every chunk of a streamed answer."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._forward, "chunk", chunk)

    def _forward(self, kind: str, event: dict[str, Any]) -> None:
        queue = self._streams.get(event["request_id"])
        if queue is not None:
            queue.put_nowait((kind, event))

    def waiting(self, request_id: str) -> bool | None:
        """From the listener thread, before decoding an answer: True when a call here waits for
        it, None when it was answered here lately (a duplicate), False when it is another
        gateway's."""
        if request_id in self._pending or request_id in self._streams:
            return True
        return None if request_id in self._answered else False

    def _resolve(self, response: dict[str, Any]) -> None:
        rid = response["request_id"]
        self.models[response["model_version"]] = time.time()
        if rid in self._streams:
            self._forward("final", response)
            self._answered.seen(rid)
            return
        fut = self._pending.pop(rid, None)
        if fut is None or fut.done():
            self.metrics.duplicates.inc()
            return
        fut.set_result(response)
        self._answered.seen(rid)

    async def complete(self, body: Any, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """One chat completion: status and JSON body (OpenAI shape, or an OpenAI error)."""
        started = time.perf_counter()
        status, payload = await self._complete(body, headers)
        self.metrics.requests.labels(status=str(status)).inc()
        self.metrics.latency.observe((time.perf_counter() - started) * 1000)
        return status, payload

    def _request(
        self, body: Any, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]] | dict[str, Any]:
        """The InferenceRequest of a call, or the error to answer it with."""
        waiting = len(self._pending) + len(self._streams)
        if waiting >= self.config.max_pending:
            return openai_error(ERR_OVERLOADED, f"{waiting} calls already waiting; try again later")
        request_id = headers.get("X-Request-Id") or uuid.uuid4().hex
        session_id = headers.get("X-Session-Id") or (
            body.get("user") if isinstance(body, dict) else None
        )
        now = now_ms()
        requested = body.get("model") if isinstance(body, dict) else None
        route = self.router.route(requested or None, session_id or request_id, now)
        timeout_s = self.config.timeout_s
        try:
            lane = lane_of_call(body, headers)
        except ValueError as exc:
            return openai_error(ERR_INVALID, str(exc))
        try:
            event = request_from_openai(
                body,
                request_id=request_id,
                reply_topic=self.reply_topic,
                timeout_s=timeout_s,
                now=now,
                model=route.model if route.model in self.models or route.experiment_id else None,
                session_id=session_id,
                experiment_id=route.experiment_id,
                variant=route.variant,
            )
        except InvalidRequest as exc:
            return openai_error(ERR_INVALID, str(exc))
        if request_id in self._pending or request_id in self._streams:
            return openai_error(ERR_INVALID, f"X-Request-Id {request_id!r} is already in flight")
        if lane != USER:
            event["metadata"] = {**event.get("metadata", {}), "lane": lane}
        return event

    def _topic(self, event: Mapping[str, Any]) -> str:
        """The request topic of the call's lane."""
        if (event.get("metadata") or {}).get("lane") == BACKGROUND:
            return self.background_topic
        return self.requests_topic

    async def _complete(self, body: Any, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        assert self._loop is not None
        event = self._request(body, headers)
        if isinstance(event, tuple):
            return event
        event["stream"] = False  # this path answers with the whole text
        request_id, session_id = event["request_id"], event["session_id"]
        timeout_s = self.config.timeout_s
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._pending[request_id] = fut
        self.metrics.pending.set(len(self._pending))
        try:
            self.producer.send(
                "InferenceRequest",
                event,
                topic=self._topic(event),
                key=session_id or request_id,
                prepare=False,
            )
            try:
                response = await asyncio.wait_for(fut, timeout_s + 1.0)
            except TimeoutError:
                return openai_error(
                    ERR_TIMEOUT, f"no answer within {timeout_s:.0f}s (request {request_id})"
                )
        finally:
            self._pending.pop(request_id, None)
            self.metrics.pending.set(len(self._pending))
        error = response.get("error")
        if error:
            return openai_error(error["type"], error["message"])
        return 200, openai_from_response(response)

    # -- streamed calls ----------------------------------------------------------------------

    def open_stream(
        self, body: Any, headers: Mapping[str, str]
    ) -> StreamCall | tuple[int, dict[str, Any]]:
        """A streamed call (``"stream": true``): its request is on Kafka and its chunks are
        queued for :meth:`StreamCall.events`; or the error to answer with before streaming."""
        event = self._request(body, headers)
        if isinstance(event, tuple):
            self.metrics.requests.labels(status=str(event[0])).inc()
            return event
        options = body.get("stream_options") or {}
        call = StreamCall(self, event, include_usage=bool(options.get("include_usage")))
        self._streams[call.request_id] = call.queue
        self.metrics.pending.set(len(self._pending) + len(self._streams))
        try:
            self.producer.send(
                "InferenceRequest",
                event,
                topic=self._topic(event),
                key=event["session_id"] or call.request_id,
                prepare=False,
            )
        except Exception:
            self._streams.pop(call.request_id, None)
            raise
        return call

    def _close_stream(self, request_id: str) -> None:
        self._streams.pop(request_id, None)
        self.metrics.pending.set(len(self._pending) + len(self._streams))

    def cancel(self, request_id: str, reason: str) -> None:
        """Tell the workers to stop generating ``request_id`` (nobody waits for it)."""
        try:
            self.producer.send(
                "InferenceCancel",
                cancel_event(request_id, reason, now_ms()),
                topic=self.cancels_topic,
                key=request_id,
                prepare=False,
            )
        except Exception:  # a cancel saves work; losing one costs a generation, nothing else
            log.exception("cancel of %s not sent", request_id)

    # -- HTTP --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._http_complete)
        app.router.add_get("/v1/models", self._http_models)
        app.router.add_get("/health", self._http_health)
        app.router.add_get("/metrics", self._http_metrics)

        async def on_startup(_: web.Application) -> None:
            await self.start()

        async def on_cleanup(_: web.Application) -> None:
            await self.stop()

        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
        return app

    def _refusal(self, request: web.Request) -> web.Response | None:
        """401 for a missing or wrong API key, 429 past the key's rate; None to go on. Shaped as
        OpenAI's errors; the presented key is never logged or echoed."""
        if self.keys is None or not self.keys.enabled:
            return None
        name = self.keys.identify(request.headers)
        if name is None:
            missing = not request.headers.get("Authorization", "").strip()
            self.metrics.refused.labels("missing_key" if missing else "wrong_key").inc()
            message = (
                "You didn't provide an API key: send 'Authorization: Bearer <key>'."
                if missing
                else "Incorrect API key provided."
            )
            body = {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
            return web.json_response(
                body, status=401, headers={"WWW-Authenticate": 'Bearer realm="continuum"'}
            )
        wait = self.keys.admit(name)
        if wait > 0:
            self.metrics.refused.labels("rate_limited").inc()
            body = {
                "error": {
                    "message": f"Rate limit reached for API key {name!r} "
                    f"({self.keys.rate_per_min:g} requests per minute); retry in {wait:.1f}s.",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            }
            return web.json_response(
                body, status=429, headers={"Retry-After": str(max(1, math.ceil(wait)))}
            )
        self.metrics.by_key.labels(name).inc()
        return None

    async def _http_complete(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError as exc:
            status, payload = openai_error(ERR_INVALID, f"body is not valid JSON: {exc}")
            return web.json_response(payload, status=status)
        if isinstance(body, dict) and body.get("stream") is True:
            return await self._http_stream(request, body)
        status, payload = await self.complete(body, request.headers)
        return web.json_response(payload, status=status)

    async def _http_stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        """Server-sent events, OpenAI's ``chat.completion.chunk`` shape. A client that goes away
        (a failed write, or a closed connection while waiting) cancels the generation."""
        started = time.perf_counter()
        call = self.open_stream(body, request.headers)
        if isinstance(call, tuple):
            status, payload = call
            return web.json_response(payload, status=status)
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Request-Id": call.request_id,
            },
        )

        def gone() -> bool:
            transport = request.transport
            return transport is None or transport.is_closing()

        try:
            await response.prepare(request)
            async for data in call.events(gone):
                await response.write(data)
            if call.outcome == "disconnected":
                call.disconnected()
            else:
                await response.write_eof()
        except ConnectionError:
            call.disconnected()
        except asyncio.CancelledError:
            call.disconnected()
            raise
        finally:
            call.close()
            self.metrics.requests.labels(status=call.status).inc()
            self.metrics.latency.observe((time.perf_counter() - started) * 1000)
        return response

    async def _http_models(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        data = [
            {"id": m, "object": "model", "created": int(t), "owned_by": "continuum"}
            for m, t in sorted(self.models.items())
        ]
        return web.json_response({"object": "list", "data": data})

    async def _http_health(self, _: web.Request) -> web.Response:
        listener_ok = self.listener is not None and self.listener.is_alive()
        status = "ok" if listener_ok else "unhealthy"
        exp = self.router.running()
        return web.json_response(
            {
                "status": status,
                "reply_topic": self.reply_topic,
                "requests_topic": self.requests_topic,
                "pending": len(self._pending),
                "models": sorted(self.models),
                "experiment": exp["experiment_id"] if exp else None,
                "uptime_s": round(time.time() - self.started, 1),
            },
            status=200 if listener_ok else 503,
        )

    async def _http_metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )
