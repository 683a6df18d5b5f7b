"""Pure mapping between the three shapes an inference goes through.

OpenAI chat-completion JSON  <->  ``InferenceRequest`` / ``InferenceResponse`` events  <->  the
engine's :class:`GenerationRequest` / :class:`GenerationResult`.

No Kafka, no engine, no clock of its own (callers pass ``now_ms``), so every rule here is
unit-tested without a broker or a model.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.ids import stable_id

ROLES = frozenset({"system", "user", "assistant", "tool"})

# InferenceError.type values (the Avro contract documents the same four).
ERR_TIMEOUT = "timeout"
ERR_INVALID = "invalid_request"
ERR_ENGINE = "engine_error"
ERR_OVERLOADED = "overloaded"
ERROR_TYPES = (ERR_TIMEOUT, ERR_INVALID, ERR_ENGINE, ERR_OVERLOADED)

MAX_TOKENS_LIMIT = 32_768


class InvalidRequest(ValueError):
    """A request that cannot be generated; the message names the field and what was wrong."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True)
class GenerationRequest:
    """What an engine needs: the conversation and how to sample. Nothing about Kafka."""

    request_id: str
    messages: tuple[dict[str, str], ...]
    sampling: Sampling = field(default_factory=Sampling)
    deadline_ms: int | None = None
    json_schema: dict[str, Any] | None = None  # constrain the answer to this JSON schema


@dataclass(frozen=True)
class GenerationResult:
    text: str
    finish_reason: str  # stop | length | timeout
    prompt_tokens: int
    completion_tokens: int
    started_ms: float  # wall clock (epoch ms) when the engine began this request
    first_token_ms: float | None  # wall clock of the first generated token
    finished_ms: float

    @property
    def time_to_first_token_ms(self) -> float | None:
        if self.first_token_ms is None:
            return None
        return max(0.0, self.first_token_ms - self.started_ms)


# The Kafka header that carries an answer's request id on the gateways' reply topic: a gateway
# skips, without decoding, the answers to calls another gateway is waiting for.
REQUEST_ID_HEADER = "continuum-request-id"


def request_id_headers(request_id: str) -> list[tuple[str, bytes]]:
    """The Kafka headers of an answer on the gateways' reply topic."""
    return [(REQUEST_ID_HEADER, str(request_id).encode())]


def request_id_of(headers: list[tuple[str, bytes]] | None) -> str | None:
    """The request id an answer's headers carry, if any (without decoding the answer)."""
    for key, value in headers or ():
        if key == REQUEST_ID_HEADER:
            return value.decode(errors="replace")
    return None


# -- validation -------------------------------------------------------------------------------


def check_sampling(s: Mapping[str, Any], *, where: str = "sampling") -> list[str]:
    """Problems with sampling parameters, each naming the field (empty list: fine)."""
    problems: list[str] = []

    def number(name: str) -> float | None:
        v = s.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            problems.append(f"{where}.{name}: got {v!r}, expected a finite number")
            return None
        return float(v)

    mt = s.get("max_tokens")
    if mt is not None and (
        isinstance(mt, bool) or not isinstance(mt, int) or not 1 <= mt <= MAX_TOKENS_LIMIT
    ):
        problems.append(
            f"{where}.max_tokens: got {mt!r}, expected an integer from 1 to {MAX_TOKENS_LIMIT}"
        )
    t = number("temperature")
    if t is not None and not 0.0 <= t <= 2.0:
        problems.append(f"{where}.temperature: got {t!r}, expected a value from 0 to 2")
    p = number("top_p")
    if p is not None and not 0.0 < p <= 1.0:
        problems.append(f"{where}.top_p: got {p!r}, expected a value in (0, 1]")
    for name in ("presence_penalty", "frequency_penalty"):
        v = number(name)
        if v is not None and not -2.0 <= v <= 2.0:
            problems.append(f"{where}.{name}: got {v!r}, expected a value from -2 to 2")
    stop = s.get("stop")
    if stop is not None and (
        not isinstance(stop, list | tuple) or not all(isinstance(x, str) and x for x in stop)
    ):
        problems.append(f"{where}.stop: got {stop!r}, expected a list of non-empty strings")
    elif stop is not None and len(stop) > 4:
        problems.append(f"{where}.stop: got {len(stop)} sequences, expected at most 4")
    return problems


def check_messages(messages: Any, *, where: str = "messages") -> list[str]:
    if not isinstance(messages, list | tuple) or not messages:
        return [f"{where}: got {messages!r:.80}, expected a non-empty list of messages"]
    problems: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            problems.append(f"{where}[{i}]: got {m!r:.60}, expected an object with role/content")
            continue
        role = m.get("role")
        if role not in ROLES:
            problems.append(f"{where}[{i}].role: got {role!r}, expected one of {sorted(ROLES)}")
        content = m.get("content")
        if not isinstance(content, str):
            problems.append(f"{where}[{i}].content: got {content!r:.60}, expected a string")
    if not problems and messages[-1].get("role") == "assistant":
        problems.append(f"{where}[-1].role: the last message is the assistant's; nothing to answer")
    return problems


def generation_request(event: Mapping[str, Any]) -> GenerationRequest:
    """The engine's view of a decoded ``InferenceRequest``; raises :class:`InvalidRequest`."""
    problems = check_messages(event.get("messages"))
    sampling = dict(event.get("sampling") or {})
    problems += check_sampling(sampling)
    schema = None
    if event.get("response_format"):
        try:
            schema = json.loads(event["response_format"])
        except (TypeError, ValueError) as exc:
            problems.append(f"response_format: not JSON ({exc})")
        else:
            if not isinstance(schema, dict):
                problems.append(f"response_format: expected a JSON schema object, got {schema!r}")
    if problems:
        raise InvalidRequest("; ".join(problems))
    deadline = event.get("deadline")
    return GenerationRequest(
        request_id=str(event["request_id"]),
        messages=tuple({"role": m["role"], "content": m["content"]} for m in event["messages"]),
        sampling=Sampling(
            max_tokens=int(sampling.get("max_tokens", 256)),
            temperature=float(sampling.get("temperature", 0.7)),
            top_p=float(sampling.get("top_p", 1.0)),
            stop=tuple(sampling.get("stop") or ()),
            seed=sampling.get("seed"),
            presence_penalty=float(sampling.get("presence_penalty", 0.0)),
            frequency_penalty=float(sampling.get("frequency_penalty", 0.0)),
        ),
        deadline_ms=_millis(deadline),
        json_schema=schema,
    )


def _millis(value: Any) -> int | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):  # fastavro gives datetimes for timestamp-millis
        return int(value.timestamp() * 1000)
    return int(value)


# -- events ----------------------------------------------------------------------------------


def response_event(
    request: Mapping[str, Any],
    *,
    model_version: str,
    worker_id: str,
    result: GenerationResult | None = None,
    error: tuple[str, str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The ``InferenceResponse`` for a request: the result's text and timings, or an error."""
    finished = now if now is not None else (result.finished_ms if result else now_ms())
    requested = _millis(request.get("event_time")) or finished
    request_id = str(request.get("request_id") or "")
    base = {
        # One answer per request and outcome: a redelivered request answered again gets the same
        # id (the gateway and every reader de-duplicate on it).
        "event_id": stable_id("response", request_id, error[0] if error else "ok"),
        "event_time": int(finished),
        "request_id": request_id,
        "session_id": request.get("session_id"),
        "model_version": model_version,
        "experiment_id": request.get("experiment_id"),
        "variant": request.get("variant"),
        "worker_id": worker_id,
        "total_ms": max(0.0, float(finished) - requested),
    }
    if error is not None:
        kind, message = error
        if kind not in ERROR_TYPES:
            raise ValueError(f"unknown inference error type {kind!r}; expected {ERROR_TYPES}")
        return {
            **base,
            "text": "",
            "finish_reason": "timeout" if kind == ERR_TIMEOUT else "error",
            "queue_wait_ms": base["total_ms"],
            "error": {"type": kind, "message": message},
        }
    if result is None:
        raise ValueError("response_event needs a result or an error")
    return {
        **base,
        "text": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "queue_wait_ms": max(0.0, result.started_ms - requested),
        "time_to_first_token_ms": result.time_to_first_token_ms,
        "error": None,
    }


def _meta_float(meta: Mapping[str, str], key: str) -> float | None:
    raw = meta.get(key)
    try:
        v = float(raw) if raw is not None else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) else None


def turn_event(request: Mapping[str, Any], response: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ChatTurn`` measurement of an answered request (latency split and tokens).

    What only the chatbot service knows (intent, confidence, turn index, lead capture) comes from
    the request's ``metadata`` when the service put it there; otherwise it stays empty.
    """
    meta = dict(request.get("metadata") or {})
    messages = request.get("messages") or []
    user = last_user_text(messages)
    confidence = _meta_float(meta, "confidence")
    if confidence is not None and not 0.0 <= confidence <= 1.0:
        confidence = None
    turn_index = meta.get("turn_index", "0")
    failed = response.get("error") is not None
    return {
        # The measurement of one request: the same id however often the request is answered, so
        # stage 1 counts it once.
        "event_id": stable_id("turn", request.get("request_id") or response.get("request_id")),
        "event_time": response["event_time"],
        "session_id": request.get("session_id") or str(request.get("request_id")),
        "turn_index": int(turn_index) if turn_index.isdigit() else 0,
        "model_version": response["model_version"],
        "experiment_id": request.get("experiment_id"),
        "variant": request.get("variant"),
        "user_query": user,
        "bot_response": response.get("text", ""),
        "intent": meta.get("intent") or None,
        "confidence": confidence,
        "is_fallback": failed or meta.get("is_fallback", "").lower() == "true",
        "latency_ms": float(response.get("total_ms") or 0.0),
        "queue_wait_ms": response.get("queue_wait_ms"),
        "time_to_first_token_ms": response.get("time_to_first_token_ms"),
        "prompt_tokens": response.get("prompt_tokens"),
        "completion_tokens": response.get("completion_tokens"),
        "lead_captured": meta.get("lead_captured", "").lower() == "true",
        "request_id": response.get("request_id"),
        "metadata": {
            "source": "inference-worker",
            **({"streamed": "true"} if request.get("stream") else {}),
            **({"error": response["error"]["type"]} if failed else {}),
            **(
                {"finish_reason": response["finish_reason"]}
                if response.get("finish_reason")
                else {}
            ),
        },
    }


# -- OpenAI JSON -----------------------------------------------------------------------------

OPENAI_SAMPLING = (
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)
UNSUPPORTED = {
    "n": "only n=1 is supported",
    "tools": "tool calls are not supported",
    "logprobs": "logprobs are not supported",
}


def openai_response_format(value: Any) -> str | None:
    """OpenAI's ``response_format`` as the request's JSON schema text: ``json_schema`` (its
    ``schema``), ``json_object`` (any object) or ``text`` (none); raises InvalidRequest."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return json.dumps({"type": "object"})
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequest('response_format: json_schema needs {"schema": {...}}')
        return json.dumps(schema)
    raise InvalidRequest(
        f"response_format: type {kind!r} is not one of text, json_object, json_schema"
    )


def request_from_openai(
    body: Any,
    *,
    request_id: str,
    reply_topic: str,
    timeout_s: float,
    now: int,
    model: str | None = None,
    session_id: str | None = None,
    experiment_id: str | None = None,
    variant: str | None = None,
) -> dict[str, Any]:
    """An ``InferenceRequest`` event from an OpenAI chat-completion body; raises InvalidRequest."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("body: expected a JSON object")
    for name, why in UNSUPPORTED.items():
        value = body.get(name)
        allowed = value in (None, 1) and value is not True if name == "n" else not value
        if not allowed:
            raise InvalidRequest(f"{name}: {why}")
    problems = check_messages(body.get("messages"))
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        problems.append(f"stream: expected true or false, got {stream!r}")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            problems.append("stream_options: only allowed with stream=true")
        elif not isinstance(options, Mapping) or not isinstance(
            options.get("include_usage", False), bool
        ):
            problems.append('stream_options: expected {"include_usage": true|false}')
    sampling: dict[str, Any] = {}
    if body.get("max_completion_tokens") is not None and body.get("max_tokens") is None:
        sampling["max_tokens"] = body["max_completion_tokens"]
    for name in OPENAI_SAMPLING:
        if body.get(name) is not None:
            sampling[name] = body[name]
    if isinstance(sampling.get("stop"), str):
        sampling["stop"] = [sampling["stop"]]
    problems += check_sampling(sampling, where="body")
    if problems:
        raise InvalidRequest("; ".join(problems))
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise InvalidRequest("metadata: expected an object of strings")
    response_format = openai_response_format(body.get("response_format"))
    defaults = Sampling()
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": now,
        "request_id": request_id,
        "session_id": session_id,
        "messages": [
            {"role": m["role"], "content": m["content"], "name": m.get("name")}
            for m in body["messages"]
        ],
        "sampling": {
            "max_tokens": int(sampling.get("max_tokens", defaults.max_tokens)),
            "temperature": float(sampling.get("temperature", defaults.temperature)),
            "top_p": float(sampling.get("top_p", defaults.top_p)),
            "stop": list(sampling.get("stop") or []),
            "seed": sampling.get("seed"),
            "presence_penalty": float(sampling.get("presence_penalty", 0.0)),
            "frequency_penalty": float(sampling.get("frequency_penalty", 0.0)),
        },
        "model": model,
        "experiment_id": experiment_id,
        "variant": variant,
        "reply_topic": reply_topic,
        "deadline": now + int(timeout_s * 1000),
        "metadata": {str(k): str(v) for k, v in metadata.items()},
        "stream": bool(stream),
        "response_format": response_format,
    }


def openai_from_response(response: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI ``chat.completion`` object for a successful ``InferenceResponse``."""
    prompt = int(response.get("prompt_tokens") or 0)
    completion = int(response.get("completion_tokens") or 0)
    return {
        "id": f"chatcmpl-{response['request_id']}",
        "object": "chat.completion",
        "created": int((_millis(response.get("event_time")) or now_ms()) / 1000),
        "model": response["model_version"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": response.get("text", "")},
                "finish_reason": response.get("finish_reason") or "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "continuum": {
            "queue_wait_ms": response.get("queue_wait_ms"),
            "time_to_first_token_ms": response.get("time_to_first_token_ms"),
            "total_ms": response.get("total_ms"),
            "worker_id": response.get("worker_id"),
            "variant": response.get("variant"),
            "experiment_id": response.get("experiment_id"),
        },
    }


HTTP_STATUS = {ERR_INVALID: 400, ERR_TIMEOUT: 504, ERR_OVERLOADED: 503, ERR_ENGINE: 502}


def openai_error(kind: str, message: str) -> tuple[int, dict[str, Any]]:
    """HTTP status and OpenAI-style error body for an error type."""
    return HTTP_STATUS.get(kind, 500), {
        "error": {"message": message, "type": kind, "param": None, "code": kind}
    }


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return next(
        (str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
