"""Stand-ins shared by the unit tests (no broker)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from inference.protocol import GenerationRequest, Sampling


class FakeMessage:
    def __init__(self, topic: str, key: Any) -> None:
        self._topic, self._key = topic, key

    def topic(self) -> str:
        return self._topic

    def key(self) -> Any:
        return self._key


class FakeClient:
    """Stands in for confluent_kafka.Producer: records produce calls, fails on demand."""

    def __init__(self, buffer_errors: int = 0, fail_topics: tuple[str, ...] = ()) -> None:
        self.sent: list[tuple[str, bytes, Any, Any]] = []
        self.buffer_errors = buffer_errors
        self.fail_topics = fail_topics
        self.polls = 0
        self._callbacks: list[tuple[Any, FakeMessage]] = []

    def produce(
        self,
        topic: str,
        value: bytes,
        key: Any = None,
        headers: Any = None,
        on_delivery: Any = None,
    ) -> None:
        if self.buffer_errors:
            self.buffer_errors -= 1
            raise BufferError("Local: Queue full")
        self.sent.append((topic, value, key, headers))
        self._callbacks.append((on_delivery, FakeMessage(topic, key)))

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        return self._serve()

    def flush(self, timeout: float = 0) -> int:
        self._serve()
        return 0

    def _serve(self) -> int:
        n = len(self._callbacks)
        for cb, msg in self._callbacks:
            cb("broker down" if msg.topic() in self.fail_topics else None, msg)
        self._callbacks.clear()
        return n

    def __len__(self) -> int:
        return len(self._callbacks)


# -- inference engines' native libraries ------------------------------------------------------


class FakeLlama:
    """``llama_cpp.Llama`` as the engine uses it: one logits-processor call per sampled token
    (over the whole vocabulary, index = token id), and a generation that ends when the sampled
    token is the end-of-generation one, as llama.cpp's does. Vocabulary: 0..7, EOS = 2."""

    EOS = 2
    TOKENS = ("Hola", ",", " claro")
    instances: list[FakeLlama] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[dict] = []
        self.busy = False
        FakeLlama.instances.append(self)

    def token_eos(self) -> int:
        return self.EOS

    def _sample(self, processor, n_input: int) -> bool:
        """One token: False when the processor left only the end-of-generation token."""
        scores = np.zeros(8, dtype=np.single)
        out = processor(list(range(n_input)), scores)
        return int(np.argmax(out)) != self.EOS or bool(np.isfinite(out).sum() > 1)

    def create_chat_completion(self, stream: bool = False, **kw):
        assert not self.busy, "one context used by two threads at once"
        if kw["messages"][-1]["content"] == "too long":
            raise ValueError("Requested tokens (5000) exceed context window of 2048")
        self.calls.append(kw)
        if stream:
            return self._stream(kw)
        self.busy = True
        try:
            text, n = "", 0
            for tok in self.TOKENS:
                if not self._sample(kw["logits_processor"][0], 12 + n):
                    break
                text += tok
                n += 1
                time.sleep(0.01)
            return {
                "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": n},
            }
        finally:
            self.busy = False

    def _stream(self, kw):
        self.busy = True
        try:
            n = 0
            for tok in self.TOKENS:
                if not self._sample(kw["logits_processor"][0], 12 + n):
                    break
                n += 1
                yield {
                    "choices": [{"delta": {"content": tok} if tok else {}, "finish_reason": None}]
                }
                time.sleep(0.01)
            else:
                self._sample(kw["logits_processor"][0], 12 + n)  # sampled: end of generation
            yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}
        finally:
            self.busy = False


def gen_request(rid="r", content="hola", deadline=None, **sampling):
    return GenerationRequest(
        rid, ({"role": "user", "content": content},), Sampling(**sampling), deadline
    )


def output(text, tokens, finished, reason=None, prompt=(1, 2, 3)):
    return SimpleNamespace(
        prompt_token_ids=list(prompt),
        finished=finished,
        outputs=[SimpleNamespace(text=text, token_ids=list(tokens), finish_reason=reason)],
    )


class FakeTokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + "<|assistant|>"


class FakeAsyncLLM:
    def __init__(self, delay=0.0):
        self.prompts, self.aborted, self.delay = [], [], delay

    def get_tokenizer(self):
        return FakeTokenizer()

    async def generate(self, prompt, params, request_id):
        self.prompts.append((prompt, params, request_id))
        yield output("", [], False)
        yield output("Hola", [7], False)
        await asyncio.sleep(self.delay)
        yield output("Hola, claro", [7, 8, 9], True, "length")

    async def abort(self, request_id):
        self.aborted.append(request_id)

    def shutdown(self):
        pass
