"""The gateway's reply listener: answers to its own calls are decoded and delivered, answers to
another gateway's calls are skipped by their request-id header without decoding, and a repeat of
an answer already delivered here is counted as a duplicate."""

from __future__ import annotations

from typing import Any

from continuum.settings import Settings
from inference.gateway import Gateway, GatewayConfig
from inference.protocol import REQUEST_ID_HEADER
from inference.routing import ReplyListener
from schemas import AvroDeserializer, AvroSerializer
from tests.examples import EXAMPLES


class NoProducer:
    def send(self, *a: Any, **kw: Any) -> None:
        raise AssertionError("nothing is sent here")


def listener() -> tuple[ReplyListener, Gateway, list[str]]:
    gateway = Gateway(Settings(), GatewayConfig(), producer=NoProducer())  # type: ignore[arg-type]
    delivered: list[str] = []
    gateway.deliver = lambda response: delivered.append(response["request_id"])  # type: ignore[method-assign]
    reader = ReplyListener.__new__(ReplyListener)  # no consumer: _handle is what is tested
    reader.gateway, reader.reply_topic, reader.decoder = gateway, "replies", AvroDeserializer()
    return reader, gateway, delivered


def answer(rid: str) -> bytes:
    return AvroSerializer().encode(
        "InferenceResponse", {**EXAMPLES["InferenceResponse"], "request_id": rid}
    )


def test_only_the_answers_this_gateway_waits_for_are_decoded() -> None:
    reader, gateway, delivered = listener()
    gateway._pending["mine"] = None  # type: ignore[assignment]
    gateway._answered.seen("done")
    reader._handle("replies", answer("mine"), [(REQUEST_ID_HEADER, b"mine")])
    reader._handle("replies", b"\x00not avro at all", [(REQUEST_ID_HEADER, b"theirs")])
    reader._handle("replies", answer("done"), [(REQUEST_ID_HEADER, b"done")])
    reader._handle("replies", answer("old-worker"), None)  # no header: decoded as before
    assert delivered == ["mine", "old-worker"]
    assert gateway.metrics.others._value.get() == 1  # skipped, never decoded (not Avro above)
    assert gateway.metrics.duplicates._value.get() == 1


def test_a_delivered_answer_is_remembered_so_its_repeat_is_a_duplicate() -> None:
    import asyncio

    async def run() -> tuple[bool | None, bool | None]:
        gateway = Gateway(Settings(), GatewayConfig(), producer=NoProducer())  # type: ignore[arg-type]
        fut = asyncio.get_running_loop().create_future()
        gateway._pending["r1"] = fut
        before = gateway.waiting("r1")
        gateway._resolve({**EXAMPLES["InferenceResponse"], "request_id": "r1"})
        assert fut.done()
        return before, gateway.waiting("r1")

    assert asyncio.run(run()) == (True, None)
