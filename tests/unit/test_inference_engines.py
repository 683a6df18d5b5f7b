"""Engines without their native libraries: llama.cpp behind a fake ``Llama``, vLLM behind a fake
async engine with vLLM's output shapes. What is tested is Continuum's mapping, concurrency and
deadline handling; the real engines run in the integration tests and the benchmark."""

from __future__ import annotations

import asyncio
import time

import pytest

from inference.engines.llamacpp import LlamaCppEngine
from inference.engines.vllm import VllmEngine, result_from_output, sampling_kwargs
from inference.protocol import InvalidRequest
from inference.routing import VariantRouter
from tests.unit.fakes import FakeAsyncLLM, FakeLlama, gen_request, output


@pytest.fixture()
def model_file(tmp_path):
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_llamacpp_maps_sampling_and_measures_first_token(model_file):
    FakeLlama.instances.clear()
    engine = LlamaCppEngine(model_file, slots=2, threads=4, llama_factory=FakeLlama)

    async def run():
        await engine.start()
        try:
            return await engine.generate(
                gen_request(max_tokens=9, temperature=0.0, stop=("\n",), seed=3)
            )
        finally:
            await engine.stop()

    res = asyncio.run(run())
    assert res.text == "Hola, claro" and res.finish_reason == "stop"
    assert (res.prompt_tokens, res.completion_tokens) == (12, 3)
    assert (
        res.first_token_ms is not None and res.started_ms <= res.first_token_ms <= res.finished_ms
    )
    assert engine.model_version == "tiny"
    assert len(FakeLlama.instances) == 2
    assert FakeLlama.instances[0].kwargs["n_threads"] == 2  # 4 threads split over 2 slots
    call = next(i for i in FakeLlama.instances if i.calls).calls[0]
    assert call["max_tokens"] == 9 and call["temperature"] == 0.0
    assert call["stop"] == ["\n"] and call["seed"] == 3


def test_llamacpp_slots_bound_concurrency_and_never_share_a_context(model_file):
    FakeLlama.instances.clear()
    engine = LlamaCppEngine(model_file, slots=2, llama_factory=FakeLlama)

    async def run():
        await engine.start()
        try:
            return await asyncio.gather(*(engine.generate(gen_request(f"r{i}")) for i in range(8)))
        finally:
            await engine.stop()

    results = asyncio.run(run())
    assert len(results) == 8
    assert sum(len(i.calls) for i in FakeLlama.instances) == 8  # FakeLlama asserts exclusivity


def test_llamacpp_deadline_and_context_overflow(model_file):
    engine = LlamaCppEngine(model_file, llama_factory=FakeLlama)

    async def run():
        await engine.start()
        try:
            expired = await engine.generate(gen_request(deadline=1))
            mid = await engine.generate(gen_request(deadline=int(time.time() * 1000) + 5))
            with pytest.raises(InvalidRequest, match="exceed context window"):
                await engine.generate(gen_request(content="too long"))
            return expired, mid
        finally:
            await engine.stop()

    expired, mid = asyncio.run(run())
    assert expired.finish_reason == "timeout" and expired.completion_tokens == 0
    assert mid.finish_reason == "timeout"  # stopped between tokens once the deadline passed


def test_llamacpp_refuses_a_missing_model(tmp_path):
    from inference.engines.base import EngineError

    with pytest.raises(EngineError, match="GGUF model file not found"):
        LlamaCppEngine(tmp_path / "nope.gguf")


# -- vLLM ------------------------------------------------------------------------------------


def test_vllm_sampling_params_use_openai_names():
    req = gen_request(
        max_tokens=5,
        temperature=0.2,
        top_p=0.9,
        stop=("x",),
        seed=11,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
    )
    assert sampling_kwargs(req) == {
        "max_tokens": 5,
        "temperature": 0.2,
        "top_p": 0.9,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "stop": ["x"],
        "seed": 11,
    }
    assert "stop" not in sampling_kwargs(gen_request()) and "seed" not in sampling_kwargs(
        gen_request()
    )


def test_vllm_result_mapping():
    res = result_from_output(
        output("abc", [1, 2], True, "abort"), started_ms=1, first_token_ms=2, finished_ms=3
    )
    assert (res.text, res.finish_reason, res.prompt_tokens, res.completion_tokens) == (
        "abc",
        "timeout",
        3,
        2,
    )


def test_vllm_engine_streams_to_a_result_and_aborts_late_requests():
    fake = FakeAsyncLLM()
    engine = VllmEngine(
        model_version="smol", engine_factory=lambda: fake, sampling_factory=lambda **kw: kw
    )

    async def run():
        await engine.start()
        ok = await engine.generate(gen_request("a", max_tokens=3))
        fake.delay = 0.05
        late = await engine.generate(gen_request("b", deadline=int(time.time() * 1000) + 10))
        await engine.stop()
        return ok, late

    ok, late = asyncio.run(run())
    assert ok.text == "Hola, claro" and ok.finish_reason == "length"
    assert (ok.prompt_tokens, ok.completion_tokens) == (3, 3)
    assert ok.first_token_ms is not None
    prompt, params, rid = fake.prompts[0]
    assert prompt == "<|user|>hola<|assistant|>" and params["max_tokens"] == 3 and rid == "a"
    assert late.finish_reason == "timeout" and fake.aborted == ["b"]


def test_vllm_engine_needs_a_model_folder():
    from inference.engines.base import EngineError

    with pytest.raises(EngineError, match="needs --model-path"):
        VllmEngine()


# -- routing ---------------------------------------------------------------------------------


def test_router_sends_sessions_to_experiment_arms_stickily():
    router = VariantRouter()
    assert router.route(None, "s1", 0).model is None
    router.update(
        {
            "experiment_id": "e1",
            "control_version": "v1",
            "treatment_version": "v2",
            "traffic_split": 50.0,
            "strategy": "STICKY",
            "status": "RUNNING",
            "event_time": 1,
        }
    )
    routes = [router.route(None, f"s{i}", 0) for i in range(400)]
    arms = {r.variant for r in routes}
    assert arms == {"control", "treatment"}
    assert all(r.model == ("v1" if r.variant == "control" else "v2") for r in routes)
    assert all(r.experiment_id == "e1" for r in routes)
    share = sum(r.variant == "treatment" for r in routes) / len(routes)
    assert 0.4 < share < 0.6
    assert router.route(None, "s7", 0) == router.route(None, "s7", 99)  # sticky
    assert router.route("other-model", "s7", 0).experiment_id is None
    router.update({**router.experiments["e1"], "status": "STOPPED"})
    assert router.route(None, "s7", 0).experiment_id is None


def test_llamacpp_stops_a_long_prompt_between_pieces_once_cancelled(model_file):
    """A judge-sized prompt is evaluated in pieces; a cancel (a user preempting the slot) stops it
    before the next piece instead of after the whole prompt."""
    import threading

    cancel = threading.Event()

    class LongPrompt(FakeLlama):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.evaluated = 0

        def eval(self, tokens):
            self.evaluated += len(tokens)
            if self.evaluated >= 64:
                cancel.set()  # the user arrives after two pieces

        def create_chat_completion(self, stream: bool = False, **kw):
            self.eval(list(range(300)))  # the prompt, as Llama.generate does
            return super().create_chat_completion(stream=stream, **kw)

    engine = LlamaCppEngine(model_file, llama_factory=LongPrompt)

    async def run(c):
        await engine.start()
        try:
            return await engine.generate(gen_request("judge"), cancel=c)
        finally:
            await engine.stop()

    result = asyncio.run(run(cancel))
    ctx = FakeLlama.instances[-1]
    assert result.finish_reason == "cancelled" and result.completion_tokens == 0
    assert ctx.evaluated == 64 and ctx.calls == []  # 2 pieces of 32, not 300 tokens
    assert ctx.continuum_cancel is None  # the next request starts without this one's event
    cancel.clear()
    ok = asyncio.run(run(None))
    assert ok.finish_reason == "stop" and FakeLlama.instances[-1].evaluated == 300


def test_llamacpp_passes_a_json_schema_as_its_grammar(model_file):
    import dataclasses

    FakeLlama.instances.clear()
    engine = LlamaCppEngine(model_file, llama_factory=FakeLlama)
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}

    async def run():
        await engine.start()
        try:
            req = dataclasses.replace(gen_request("j"), json_schema=schema)
            await engine.generate(req)
            await engine.generate(gen_request("free"))
        finally:
            await engine.stop()

    asyncio.run(run())
    constrained, free = FakeLlama.instances[0].calls
    assert constrained["response_format"] == {"type": "json_object", "schema": schema}
    assert "response_format" not in free


TEXT = "busco una yipeta usada de menos de un millón en Santiago con buen consumo"


def test_echo_answers_the_users_words_up_to_max_tokens_and_streams_them():
    from inference.engines.echo import EchoEngine

    engine = EchoEngine()
    pieces: list[str] = []

    async def run():
        await engine.start()
        short = await engine.generate(gen_request(content=TEXT, max_tokens=64))
        cut = await engine.generate(
            gen_request(content=TEXT, max_tokens=2), on_text=lambda t, n: pieces.append(t)
        )
        return short, cut

    short, cut = asyncio.run(run())
    words = TEXT.split()
    assert short.text == " ".join(words) and short.finish_reason == "stop"
    assert short.completion_tokens == len(words)
    assert cut.text == " ".join(words[:2]) and cut.finish_reason == "length"
    assert "".join(pieces) == cut.text and cut.completion_tokens == 2
    assert cut.first_token_ms is not None and cut.started_ms <= cut.first_token_ms


def test_echo_stops_on_cancel_and_deadline_like_the_real_engines():
    import threading

    from inference.engines.echo import EchoEngine

    engine = EchoEngine(token_ms=5)
    cancel = threading.Event()

    async def run():
        asyncio.get_running_loop().call_later(0.012, cancel.set)
        cancelled = await engine.generate(gen_request(content=TEXT, max_tokens=64), cancel=cancel)
        late = await engine.generate(gen_request(deadline=time.time() * 1000 - 1))
        return cancelled, late

    cancelled, late = asyncio.run(run())
    assert cancelled.finish_reason == "cancelled"
    assert 1 <= cancelled.completion_tokens < len(TEXT.split())
    assert late.finish_reason == "timeout" and late.completion_tokens == 0


def test_make_engine_knows_echo_and_names_the_choices():
    from inference.engines import make_engine

    assert make_engine("echo", model_path=None, model_version=None).name == "echo"
    with pytest.raises(ValueError, match="'llamacpp', 'vllm' or 'echo'"):
        make_engine("tgi")
