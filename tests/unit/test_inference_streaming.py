"""Streamed answers without a broker: the worker's chunk batching, the gateway's reassembly
(order, duplicates, a second attempt after a worker crash), the SSE it sends, and the engines'
text callbacks and cancellation behind fakes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from continuum.settings import Settings
from inference.engines.llamacpp import LlamaCppEngine
from inference.engines.vllm import VllmEngine
from inference.gateway import Gateway, GatewayConfig
from inference.streaming import (
    ChunkBatcher,
    StreamAssembler,
    StreamBroken,
    cancel_event,
    chunk_event,
    sse,
)
from producers.producer import EventProducer
from schemas import AvroDeserializer
from schemas.catalog import default_catalog
from schemas.validation import validate_event
from tests.unit.fakes import FakeAsyncLLM, FakeClient, FakeLlama, gen_request


def test_the_first_text_goes_at_once_then_every_few_ms_or_tokens() -> None:
    b = ChunkBatcher(every_ms=25, max_tokens=4)
    assert b.add("Ho", 0.0)  # time to first token: no wait
    assert b.take(0.0) == (0, "Ho", 1)
    assert not b.add("la", 5.0) and not b.add(",", 10.0)
    assert not b.due(20.0) and b.due(25.0)
    assert b.take(25.0) == (1, "la,", 3)
    for i in range(3):
        assert not b.add("x", 30.0 + i)
    assert b.add("y", 34.0)  # four tokens wait
    assert b.take(34.0) == (2, "xxxy", 7)
    assert b.take(40.0) is None


def test_chunk_and_cancel_events_are_valid_and_their_ids_come_from_their_inputs() -> None:
    request = {"request_id": "r1"}
    a = chunk_event(request, "att", 3, "hola", 5, model_version="m", worker_id="w", now_ms=1)
    b = chunk_event(request, "att", 3, "hola", 5, model_version="m", worker_id="w", now_ms=9)
    assert a["event_id"] == b["event_id"]
    assert (
        a["event_id"]
        != chunk_event(request, "att", 4, "", 5, model_version="m", worker_id="w", now_ms=1)[
            "event_id"
        ]
    )
    validate_event(default_catalog().current("InferenceChunk"), a)
    c = cancel_event("r1", "client_disconnected", 5)
    assert c["event_id"] == cancel_event("r1", "other", 6)["event_id"]
    validate_event(default_catalog().current("InferenceCancel"), c)


def chunk(attempt: str, seq: int, delta: str) -> dict[str, Any]:
    return {"attempt": attempt, "seq": seq, "delta": delta}


def test_chunks_are_forwarded_in_order_and_once() -> None:
    s = StreamAssembler()
    assert s.feed(chunk("a", 0, "Ho")) == "Ho"
    assert s.feed(chunk("a", 2, "!")) == ""  # early: waits for seq 1
    assert s.feed(chunk("a", 1, "la")) == "la!"
    assert s.feed(chunk("a", 1, "la")) == "" and s.duplicates == 1
    assert s.finish("Hola! Qué tal") == " Qué tal"
    assert s.sent == "Hola! Qué tal"


def test_a_second_attempt_continues_the_text_when_it_agrees_and_breaks_it_when_not() -> None:
    s = StreamAssembler()
    s.feed(chunk("a", 0, "Hola, "))
    s.feed(chunk("a", 1, "claro"))
    # Worker a died; b generates the request again (greedy: the same text).
    assert s.feed(chunk("b", 0, "Hola")) == ""  # catching up with what the client has
    assert s.feed(chunk("b", 1, ", claro")) == ""
    assert s.feed(chunk("b", 2, " que sí")) == " que sí"
    assert s.feed(chunk("a", 2, "zzz")) == ""  # the old attempt, still going (a zombie)
    assert s.finish("Hola, claro que sí.") == "."
    other = StreamAssembler()
    other.feed(chunk("a", 0, "Hola"))
    with pytest.raises(StreamBroken, match="differs from the 4 characters already sent"):
        other.feed(chunk("b", 0, "Buenas"))
    with pytest.raises(StreamBroken):
        other.finish("Adiós")
    assert sse("[DONE]") == b"data: [DONE]\n\n"


# -- the gateway's side of a streamed call, fed by hand ------------------------------------------


def gateway() -> Gateway:
    g = Gateway(
        Settings(bootstrap_servers="unused:1"),
        GatewayConfig(timeout_s=5.0),
        producer=EventProducer("unused:1", client=FakeClient(), publish_schemas=False),
    )
    g.models["smol"] = time.time()
    return g


def client(g: Gateway) -> FakeClient:
    fake = g.producer._producer
    assert isinstance(fake, FakeClient)
    return fake


BODY = {"model": "smol", "messages": [{"role": "user", "content": "hola"}], "stream": True}


def events(data: list[bytes]) -> list[Any]:
    out = []
    for d in data:
        text = d.decode()
        assert text.startswith("data: ") and text.endswith("\n\n")
        payload = text[6:-2]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def run_call(g: Gateway, body: dict[str, Any], feed: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async def go() -> list[bytes]:
        g._loop = asyncio.get_running_loop()
        call = g.open_stream(body, {"X-Request-Id": "r1"})
        assert not isinstance(call, tuple)
        for kind, ev in feed:
            g._forward(kind, {"request_id": "r1", **ev})
        out = [d async for d in call.events()]
        call.close()
        return out

    return events(asyncio.run(go()))


FINAL = {
    "model_version": "smol",
    "text": "Hola, claro",
    "finish_reason": "stop",
    "prompt_tokens": 7,
    "completion_tokens": 3,
    "error": None,
}


def test_a_streamed_call_sends_openai_chunks_then_the_finish_usage_and_done() -> None:
    g = gateway()
    body = {**BODY, "stream_options": {"include_usage": True}}
    got = run_call(
        g,
        body,
        [
            ("chunk", {"attempt": "a", "seq": 0, "delta": "Hola", "model_version": "smol"}),
            ("chunk", {"attempt": "a", "seq": 0, "delta": "Hola", "model_version": "smol"}),
            ("final", FINAL),
        ],
    )
    assert got[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(e["object"] == "chat.completion.chunk" for e in got[:-1])
    texts = [e["choices"][0]["delta"].get("content") for e in got[1:-3]]
    assert "".join(texts) == "Hola, claro" and texts == ["Hola", ", claro"]
    assert got[-3]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert got[-2]["choices"] == [] and got[-2]["usage"]["total_tokens"] == 10
    assert got[-1] == "[DONE]"
    # The request went to Kafka asking for chunks; nothing is left pending.
    [(topic, value, _, _)] = [r for r in client(g).sent if r[0].endswith("inference.requests")]
    assert AvroDeserializer().decode(value).record["stream"] is True
    assert not g._streams


def test_a_failed_answer_ends_the_stream_with_an_openai_error() -> None:
    g = gateway()
    got = run_call(
        g,
        BODY,
        [("final", {**FINAL, "text": "", "error": {"type": "timeout", "message": "too slow"}})],
    )
    assert got[-2] == {
        "error": {"message": "too slow", "type": "timeout", "param": None, "code": "timeout"}
    }
    assert got[-1] == "[DONE]"


def test_a_broken_stream_says_so_and_cancels_the_request() -> None:
    g = gateway()
    cancelled: list[tuple[str, str]] = []
    g.cancel = lambda rid, reason: cancelled.append((rid, reason))  # type: ignore[method-assign]
    got = run_call(
        g,
        BODY,
        [
            ("chunk", {"attempt": "a", "seq": 0, "delta": "Hola"}),
            ("chunk", {"attempt": "b", "seq": 0, "delta": "Buenas"}),
        ],
    )
    assert got[-2]["error"]["type"] == "engine_error" and "differs" in got[-2]["error"]["message"]
    assert cancelled == [("r1", "stream_broken")]


def test_bad_streamed_bodies_are_refused_before_streaming() -> None:
    g = gateway()

    async def go() -> Any:
        g._loop = asyncio.get_running_loop()
        return g.open_stream({**BODY, "stream_options": {"include_usage": "yes"}}, {})

    status, payload = asyncio.run(go())
    assert status == 400 and "stream_options" in payload["error"]["message"]


# -- engines -------------------------------------------------------------------------------------


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


class LongerLlama(FakeLlama):
    TOKENS = ("Hola", ",", " claro", "", " que", " sí")


def test_llamacpp_streams_pieces_that_make_the_answer_and_stops_when_cancelled(model_file) -> None:
    engine = LlamaCppEngine(model_file, llama_factory=LongerLlama)
    pieces: list[tuple[str, int]] = []
    cancel = threading.Event()

    def on_text(text: str, tokens: int) -> None:
        pieces.append((text, tokens))
        if text == " claro":
            cancel.set()

    async def run() -> Any:
        await engine.start()
        full = await engine.generate(gen_request("a"), on_text=lambda t, n: None)
        stopped = await engine.generate(gen_request("b"), on_text=on_text, cancel=cancel)
        await engine.stop()
        return full, stopped

    full, stopped = asyncio.run(run())
    assert full.text == "Hola, claro que sí" and full.finish_reason == "stop"
    assert (full.prompt_tokens, full.completion_tokens) == (12, 6)
    assert stopped.finish_reason == "cancelled" and stopped.text == "Hola, claro"
    assert stopped.completion_tokens == 3  # no token generated after the cancel
    assert [p for p, _ in pieces] == ["Hola", ",", " claro"]


def test_vllm_streams_what_is_new_in_each_output_and_aborts_when_cancelled() -> None:
    fake = FakeAsyncLLM()
    engine = VllmEngine(
        model_version="smol", engine_factory=lambda: fake, sampling_factory=lambda **kw: kw
    )
    pieces: list[tuple[str, int]] = []
    cancel = threading.Event()

    async def run() -> Any:
        await engine.start()
        full = await engine.generate(gen_request("a"), on_text=lambda t, n: pieces.append((t, n)))
        stopped = await engine.generate(
            gen_request("b"), on_text=lambda t, n: cancel.set(), cancel=cancel
        )
        await engine.stop()
        return full, stopped

    full, stopped = asyncio.run(run())
    assert "".join(p for p, _ in pieces) == full.text == "Hola, claro"
    assert pieces == [("Hola", 1), (", claro", 2)]
    assert stopped.finish_reason == "cancelled" and stopped.text == "Hola"
    assert fake.aborted == ["b"]
