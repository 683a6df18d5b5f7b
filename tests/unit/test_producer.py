from __future__ import annotations

import pytest

from producers.deadletter import DeadLetter, DeadLetterQueue, SafeDecoder
from producers.producer import DeliveryError, EventProducer, prepare_event
from schemas import AvroDeserializer, AvroSerializer, EventValidationError
from tests.examples import EXAMPLES
from tests.unit.fakes import FakeClient


def test_send_validates_encodes_and_keys_by_session() -> None:
    client = FakeClient()
    with EventProducer("unused", client=client, topic_prefix="t1-") as p:
        p.send("ChatTurn", EXAMPLES["ChatTurn"])
        p.send("Experiment", EXAMPLES["Experiment"])
    (t1, v1, k1, _), (t2, _, k2, _) = client.sent
    assert (t1, k1) == ("t1-chat.turns", "s-1")
    assert (t2, k2) == ("t1-experiments", "v1-vs-v2")
    assert AvroDeserializer().decode(v1).record == EXAMPLES["ChatTurn"]
    assert p.delivered == 2 and p.failed == 0


def test_invalid_event_raises_before_anything_is_sent() -> None:
    client = FakeClient()
    p = EventProducer("unused", client=client)
    with pytest.raises(EventValidationError, match=r"Feedback.rating: got 7"):
        p.send("Feedback", {**EXAMPLES["Feedback"], "rating": 7})
    assert client.sent == []


def test_prepare_fills_id_and_time_and_parses_iso_times() -> None:
    ev = prepare_event({"event_time": "2026-01-01T00:00:00Z"})
    assert ev["event_time"] == 1_767_225_600_000
    assert len(ev["event_id"]) == 36
    assert prepare_event({})["event_time"] > 1_700_000_000_000


def test_backpressure_waits_then_sends() -> None:
    client = FakeClient(buffer_errors=3)
    p = EventProducer("unused", client=client)
    p.send("ChatTurn", EXAMPLES["ChatTurn"])
    assert len(client.sent) == 1 and client.polls >= 3


def test_backpressure_gives_up_with_a_clear_error() -> None:
    client = FakeClient(buffer_errors=10**9)
    p = EventProducer("unused", client=client, max_block_s=0.2)
    with pytest.raises(TimeoutError, match="queue still full"):
        p.send("ChatTurn", EXAMPLES["ChatTurn"])


def test_failed_delivery_is_reported_on_close() -> None:
    client = FakeClient(fail_topics=("chat.feedback",))
    p = EventProducer("unused", client=client)
    p.send("ChatTurn", EXAMPLES["ChatTurn"])
    p.send("Feedback", EXAMPLES["Feedback"])
    with pytest.raises(
        DeliveryError, match=r"1 event\(s\) failed delivery .* chat.feedback: broker down"
    ):
        p.close()
    assert p.delivered == 1


def test_literal_topic_is_used_as_is() -> None:
    client = FakeClient()
    p = EventProducer("unused", client=client, topic_prefix="x-")
    p.send("ChatTurn", EXAMPLES["ChatTurn"], topic="custom.topic", key="k")
    assert client.sent[0][0] == "custom.topic" and client.sent[0][2] == "k"


def test_safe_decoder_dead_letters_with_reason_and_original_bytes() -> None:
    letters: list[tuple] = []
    dlq = DeadLetterQueue(lambda t, k, v, h: letters.append((t, k, v, h)))
    dec = SafeDecoder(AvroDeserializer(), dlq)
    good = AvroSerializer().encode("ChatTurn", EXAMPLES["ChatTurn"])
    assert dec.decode("chat.turns", b"s-1", good, expected="ChatTurn") == EXAMPLES["ChatTurn"]
    assert (
        dec.decode("chat.turns", b"s-2", b"garbage", expected="ChatTurn", partition=2, offset=41)
        is None
    )
    assert dec.decode("chat.turns", None, None, expected="ChatTurn") is None
    assert dec.decoded == 1 and dec.dead_lettered == 2
    topic, key, value, headers = letters[0]
    assert (topic, key, value) == ("chat.turns.dlq", b"s-2", b"garbage")
    letter = DeadLetter.from_headers(key, value, headers)
    assert letter.source_topic == "chat.turns" and (letter.partition, letter.offset) == (2, 41)
    assert letter.error.startswith("unknown wire format: first byte 0x67")
    assert "empty record value" in DeadLetter.from_headers(None, None, letters[1][3]).error
