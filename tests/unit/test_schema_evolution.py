"""Registry-free evolution: an older reader decodes a newer writer's records through the schemas
topic (new fields ignored, defaults applied); only an unpublished or incompatible writer schema
is refused, with that reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.schema_topic import SchemaPublisher, schema_record
from schemas import AvroDeserializer, AvroSerializer
from schemas.catalog import SchemaCatalog
from schemas.errors import DecodeError
from tests.examples import EXAMPLES
from tests.newer_schemas import newer_catalog
from tests.unit.fakes import FakeClient


def published(catalog: SchemaCatalog) -> dict[str, dict]:
    import json

    v = catalog.current("ChatTurn")
    key, value = schema_record(v)
    return {key: json.loads(value)}


def test_an_older_reader_decodes_a_newer_record_through_the_schemas_topic(tmp_path: Path) -> None:
    newer = newer_catalog(tmp_path)
    data = AvroSerializer(newer).encode("ChatTurn", {**EXAMPLES["ChatTurn"], "sentiment": 0.4})
    with pytest.raises(DecodeError, match="not published on the schemas topic"):
        AvroDeserializer(SchemaCatalog()).decode(data, "ChatTurn")
    topic = published(newer)
    asked: list[bytes] = []

    def lookup(fp: bytes) -> dict | None:
        asked.append(fp)
        return topic.get(fp.hex())

    reader = AvroDeserializer(SchemaCatalog(), writers=lookup)
    decoded = reader.decode(data, "ChatTurn")
    assert decoded.record == EXAMPLES["ChatTurn"]  # the new field dropped, nothing else lost
    assert decoded.writer == "schemas-topic"
    reader.decode(data, "ChatTurn")
    assert len(asked) == 1  # learnt once, then known by fingerprint


def test_an_incompatible_writer_is_refused_with_that_reason(tmp_path: Path) -> None:
    bad = newer_catalog(tmp_path, incompatible=True)
    record = {**EXAMPLES["ChatTurn"], "model_version": 7}
    data = AvroSerializer(bad).encode("ChatTurn", record, validate=False)
    topic = published(bad)
    reader = AvroDeserializer(SchemaCatalog(), writers=lambda fp: topic.get(fp.hex()))
    with pytest.raises(DecodeError, match="incompatible"):
        reader.decode(data, "ChatTurn")


def test_a_schema_record_that_does_not_hash_to_its_key_is_refused(tmp_path: Path) -> None:
    newer = newer_catalog(tmp_path)
    data = AvroSerializer(newer).encode("ChatTurn", EXAMPLES["ChatTurn"])
    wrong = SchemaCatalog().current("Feedback")
    import json

    reader = AvroDeserializer(SchemaCatalog(), writers=lambda fp: json.loads(wrong.schema_str))
    with pytest.raises(DecodeError, match="fingerprint"):
        reader.decode(data, "ChatTurn")


def test_the_producer_publishes_each_writer_schema_once_before_its_first_record() -> None:
    client = FakeClient()
    from producers.producer import EventProducer

    p = EventProducer("unused", client=client, topic_prefix="t-", publish_schemas=True)
    assert isinstance(p.serializer.on_new_writer, SchemaPublisher)
    p.send("ChatTurn", EXAMPLES["ChatTurn"])
    p.send("ChatTurn", EXAMPLES["ChatTurn"])
    p.send("Feedback", EXAMPLES["Feedback"])
    topics = [t for t, *_ in client.sent]
    assert topics == ["t-schemas", "t-chat.turns", "t-chat.turns", "t-schemas", "t-chat.feedback"]
    key = client.sent[0][2]
    assert key == SchemaCatalog().current("ChatTurn").fingerprint.hex()
    # A fake client in other tests publishes nothing unless asked.
    quiet = FakeClient()
    EventProducer("unused", client=quiet).send("ChatTurn", EXAMPLES["ChatTurn"])
    assert [t for t, *_ in quiet.sent] == ["chat.turns"]
