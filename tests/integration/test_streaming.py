"""Streamed answers (``"stream": true``) through the real gateway, worker and SmolLM2 on the real
broker: with the official ``openai`` client, a client that goes away, and a worker SIGKILLed
mid-stream."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import pytest

from tests.integration.conftest import wait_for
from tests.integration.inference_procs import GatewayProc, InferenceWorkerProc, metric, responses

pytest.importorskip("llama_cpp")
openai = pytest.importorskip("openai")
pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "Hola, ¿qué carros familiares me recomiendas?"}]
LONG = [{"role": "user", "content": "List 100 car brands, one per line, numbered."}]


class SseReader:
    """A streamed call over a raw HTTP connection, read event by event (so a test can stop
    reading, or hang up, whenever it wants)."""

    def __init__(self, port: int, messages: list[dict[str, str]], max_tokens: int, rid: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=180)
        body = {
            "model": "any",
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            "seed": 3,
            "stream": True,
        }
        self.conn.request(
            "POST",
            "/v1/chat/completions",
            json.dumps(body),
            {"Content-Type": "application/json", "X-Request-Id": rid},
        )
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type", "").startswith("text/event-stream")

    def next(self) -> Any:
        """The next event's data (``"[DONE]"`` or a JSON object); None at the end."""
        while True:
            line = self.response.fp.readline()
            if not line:
                return None
            text = line.decode().strip()
            if text.startswith("data: "):
                data = text[6:]
                return data if data == "[DONE]" else json.loads(data)

    def close(self) -> None:
        self.conn.sock.close() if self.conn.sock else None
        self.conn.close()


def test_streamed_chunks_concatenate_to_the_whole_answer_with_the_openai_client(stack) -> None:
    stack(InferenceWorkerProc)
    gateway = stack(GatewayProc)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gateway.port}/v1", api_key="unused")
    whole = client.chat.completions.create(
        model="any", messages=MESSAGES, max_tokens=48, temperature=0, seed=3
    )
    answer = whole.choices[0].message.content
    assert answer
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="any",
        messages=MESSAGES,
        max_tokens=48,
        temperature=0,
        seed=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, first_at, finish, usage = [], None, None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                first_at = first_at or time.perf_counter()
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    total = time.perf_counter() - started
    assert "".join(pieces) == answer
    assert len(pieces) > 1  # it streamed, not one block at the end
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
    assert first_at is not None and first_at - started < total  # text came before the end
    _, metrics = gateway.get("/metrics")
    assert metric(metrics, 'continuum_gateway_streams_total{outcome="done"}') == 1.0
    print(f"{len(pieces)} chunks; first text {first_at - started:.3f}s, all {total:.3f}s")


def test_a_client_that_hangs_up_stops_the_generation(broker, prefix, stack) -> None:
    worker = stack(InferenceWorkerProc)
    gateway = stack(GatewayProc)
    call = SseReader(gateway.port, LONG, 400, "gone-1")
    got = []
    while (
        len([e for e in got if isinstance(e, dict) and e["choices"][0]["delta"].get("content")]) < 3
    ):
        got.append(call.next())
    call.close()
    hung_up = time.monotonic()

    def cancelled() -> dict[str, Any] | None:
        return next(
            (r for r in responses(broker.bootstrap, prefix) if r["request_id"] == "gone-1"), None
        )

    wait_for(lambda: cancelled() is not None, 60, what=lambda: worker.tail())
    answer = cancelled()
    assert answer is not None
    assert answer["finish_reason"] == "cancelled", (answer["completion_tokens"], worker.tail())
    # Tokens generated after the hang-up are bounded: far fewer than the 400 asked for.
    assert answer["completion_tokens"] < 200, answer["completion_tokens"]
    _, metrics = worker.get("/metrics")
    assert metric(metrics, "okla_llm_cancelled_total") == 1.0
    _, gw = gateway.get("/metrics")
    assert metric(gw, 'continuum_gateway_streams_total{outcome="disconnected"}') == 1.0
    print(
        f"stopped after {answer['completion_tokens']} tokens, "
        f"{time.monotonic() - hung_up:.2f}s after the hang-up was seen"
    )


def test_a_worker_killed_mid_stream_ends_the_stream_never_a_silent_hang(stack) -> None:
    worker = stack(InferenceWorkerProc)
    gateway = stack(GatewayProc, "--request-timeout-s", "120")
    call = SseReader(gateway.port, LONG, 160, "killed-1")
    events = []
    while len([e for e in events if isinstance(e, dict) and e.get("choices")]) < 4:
        events.append(call.next())
    worker.kill()
    stack(InferenceWorkerProc)  # the request is generated again by the next owner
    started = time.monotonic()
    while (event := call.next()) is not None:
        events.append(event)
        if event == "[DONE]":
            break
    call.close()
    assert events[-1] == "[DONE]", events[-3:]
    assert time.monotonic() - started < 150
    errors = [e for e in events if isinstance(e, dict) and "error" in e]
    finished = [
        e
        for e in events
        if isinstance(e, dict) and e.get("choices") and e["choices"][0]["finish_reason"]
    ]
    # Either the whole answer (the new attempt agreed with what was sent) or an error event.
    assert bool(errors) != bool(finished), events[-3:]
    text = "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )
    print(f"{'error' if errors else 'complete'} after the kill; {len(text)} characters streamed")
