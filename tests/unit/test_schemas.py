from __future__ import annotations

import copy
import io
import json

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import (
    AvroDeserializer,
    AvroSerializer,
    DecodeError,
    EventValidationError,
    default_catalog,
)
from schemas.catalog import make_version
from schemas.serde import deserializer_for
from tests.avro_strategies import events
from tests.examples import EXAMPLES

CATALOG = default_catalog()
NAMES = CATALOG.names()


def test_every_contract_has_id_time_docs_and_defaults_on_optional_fields() -> None:
    assert (
        set(NAMES)
        == set(EXAMPLES)
        == {
            "Alert",
            "Baseline",
            "JudgeScore",
            "ChatTurn",
            "DriftSignal",
            "EvaluationResult",
            "Experiment",
            "Feedback",
            "InferenceCancel",
            "InferenceChunk",
            "InferenceRequest",
            "InferenceResponse",
            "ModelVersion",
            "Outcome",
            "Prediction",
            "RetrainTrigger",
            "Thresholds",
            "WorkerHeartbeat",
        }
    )
    for name in NAMES:
        raw = CATALOG.current(name).raw
        fields = {f["name"]: f for f in raw["fields"]}
        assert fields["event_id"]["type"] == {"type": "string", "logicalType": "uuid"}, name
        assert fields["event_time"]["type"] == {
            "type": "long",
            "logicalType": "timestamp-millis",
        }, name
        for f in raw["fields"]:
            assert f.get("doc"), f"{name}.{f['name']} has no doc"
            if isinstance(f["type"], list) and "null" in f["type"]:
                assert "default" in f and f["default"] is None, (
                    f"{name}.{f['name']} nullable without default"
                )


def test_feedback_categories_are_the_chatbot_twelve() -> None:
    cat = next(f for f in CATALOG.current("Feedback").raw["fields"] if f["name"] == "category")
    assert cat["type"]["symbols"] == [
        "wrong_intent",
        "hallucination",
        "incomplete",
        "wrong_language",
        "too_formal",
        "too_informal",
        "privacy_leak",
        "wrong_price",
        "wrong_vehicle_info",
        "slow_response",
        "good_response",
        "other",
    ]


def test_alert_types_and_severities_are_the_dispatch_seed_ones() -> None:
    fields = {f["name"]: f for f in CATALOG.current("Alert").raw["fields"]}
    assert len(fields["alert_type"]["type"]["symbols"]) == 8
    assert fields["severity"]["type"]["symbols"] == ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"]


def test_fingerprint_is_crc64_avro_of_canonical_form() -> None:
    for name in NAMES:
        v = CATALOG.current(name)
        # fastavro prints the fingerprint as the bytes single-object encoding writes (little-endian)
        assert v.fingerprint.hex() == fastavro.schema.fingerprint(v.canonical, "CRC-64-AVRO")


def test_single_object_header_layout() -> None:
    data = AvroSerializer().encode("ChatTurn", EXAMPLES["ChatTurn"])
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == CATALOG.current("ChatTurn").fingerprint


@pytest.mark.parametrize("name", NAMES)
def test_examples_round_trip_single_object(name: str) -> None:
    data = AvroSerializer().encode(name, EXAMPLES[name])
    decoded = AvroDeserializer().decode(data, expected=name)
    assert decoded.schema == name
    assert decoded.record == EXAMPLES[name]


@pytest.fixture()
def registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": "mock://continuum-tests"})


@pytest.mark.parametrize("name", NAMES)
def test_examples_round_trip_confluent_framing(name: str, registry: SchemaRegistryClient) -> None:
    data = AvroSerializer(registry=registry).encode(name, EXAMPLES[name], topic="t")
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert json.loads(registry.get_schema(schema_id).schema_str)["name"] == name
    # A fresh deserializer (its own cache) with the same registry reads it.
    assert AvroDeserializer(registry=registry).decode(data).record == EXAMPLES[name]


def test_one_consumer_reads_both_wire_formats(registry: SchemaRegistryClient) -> None:
    d = AvroDeserializer(registry=registry)
    a = AvroSerializer().encode("Feedback", EXAMPLES["Feedback"])
    b = AvroSerializer(registry=registry).encode(
        "Feedback", EXAMPLES["Feedback"], topic="chat.feedback"
    )
    assert d.decode(a).record == d.decode(b).record == EXAMPLES["Feedback"]


def test_confluent_framing_without_registry_is_a_clear_error(
    registry: SchemaRegistryClient,
) -> None:
    data = AvroSerializer(registry=registry).encode("ChatTurn", EXAMPLES["ChatTurn"], topic="t")
    with pytest.raises(DecodeError, match="no schema registry is configured"):
        AvroDeserializer().decode(data)


@pytest.mark.parametrize("name", NAMES)
def test_generated_events_round_trip(name: str) -> None:
    ser, de = AvroSerializer(), AvroDeserializer()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(events(CATALOG.current(name)))
    def check(record: dict) -> None:
        assert de.decode(ser.encode(name, record), expected=name).record == record

    check()


# -- evolution ------------------------------------------------------------------------------


def test_old_chatturn_writer_decodes_with_new_reader() -> None:
    old = next(v for v in CATALOG.versions("ChatTurn") if v.label == "ChatTurn.v1")
    record = {
        k: v
        for k, v in EXAMPLES["ChatTurn"].items()
        if k not in ("queue_wait_ms", "time_to_first_token_ms", "request_id")
    }
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + old.fingerprint)
    fastavro.schemaless_writer(buf, old.wire, record)
    decoded = AvroDeserializer().decode(buf.getvalue())
    assert decoded.writer == "ChatTurn.v1"
    assert decoded.record == {
        **record,
        "queue_wait_ms": None,
        "time_to_first_token_ms": None,
        "request_id": None,
    }


@pytest.mark.parametrize("name", NAMES)
def test_every_schema_evolves_from_a_writer_without_its_optional_fields(name: str) -> None:
    """Old writer = the current schema minus every field with a default; new reader fills them."""
    current = CATALOG.current(name)
    raw = copy.deepcopy(current.raw)
    raw["fields"] = [f for f in raw["fields"] if "default" not in f]
    catalog = type(CATALOG)()
    old = catalog.add_writer(raw, label="old")
    record = {k: v for k, v in EXAMPLES[name].items() if k in {f["name"] for f in raw["fields"]}}
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + old.fingerprint)
    fastavro.schemaless_writer(buf, old.wire, record)
    decoded = AvroDeserializer(catalog).decode(buf.getvalue())
    defaults = {f["name"]: f["default"] for f in current.raw["fields"] if "default" in f}
    assert decoded.record == {**defaults, **record}


@pytest.mark.parametrize("name", NAMES)
def test_old_reader_reads_new_writer(name: str) -> None:
    """Forward compatibility: consumers not yet upgraded skip fields they do not know."""
    current = CATALOG.current(name)
    raw = copy.deepcopy(current.raw)
    raw["fields"] = [f for f in raw["fields"] if "default" not in f]
    old = make_version(raw)
    data = AvroSerializer().encode(name, EXAMPLES[name])
    body = io.BytesIO(data[10:])
    record = fastavro.schemaless_reader(body, current.wire, old.wire)
    assert record == {k: EXAMPLES[name][k] for k in old.field_names}


# -- refusing bad events ----------------------------------------------------------------------

BAD = [
    (
        "ChatTurn",
        {"latency_ms": "slow"},
        "ChatTurn.latency_ms: got 'slow', expected a finite latency >= 0 ms",
    ),
    ("ChatTurn", {"latency_ms": -3.0}, "ChatTurn.latency_ms: got -3.0"),
    (
        "ChatTurn",
        {"confidence": 1.7},
        "ChatTurn.confidence: got 1.7, expected a confidence between 0 and 1",
    ),
    ("ChatTurn", {"event_id": "abc"}, "ChatTurn.event_id: got 'abc', expected a UUID"),
    (
        "ChatTurn",
        {"turn_index": 2**40},
        "ChatTurn.turn_index: got 1099511627776, expected a 32-bit int",
    ),
    ("ChatTurn", {"intent": 3}, "ChatTurn.intent: got 3, expected null or string"),
    (
        "ChatTurn",
        {"metadata": {"a": 1}},
        "ChatTurn.metadata: got {'a': 1}, expected a map of string to string",
    ),
    ("ChatTurn", {"latncy_ms": 3}, "ChatTurn.latncy_ms: got 3, expected no such field"),
    ("ChatTurn", {"user_query": None}, "ChatTurn.user_query: got None, expected string"),
    ("Feedback", {"rating": 9}, "Feedback.rating: got 9, expected a rating from 1 to 5"),
    (
        "Feedback",
        {"category": "rude"},
        "Feedback.category: got 'rude', expected one of ['wrong_intent'",
    ),
    (
        "Feedback",
        {"thumbs": "up"},
        "Feedback.thumbs: got 'up', expected null or one of ['UP', 'DOWN']",
    ),
    (
        "InferenceRequest",
        {"messages": []},
        "InferenceRequest.messages: got [], expected a non-empty list",
    ),
    (
        "InferenceRequest",
        {"messages": [{"role": "bot", "content": "x", "name": None}]},
        "InferenceRequest.messages: got [{'role': 'bot'",
    ),
    (
        "Experiment",
        {"treatment_version": "okla-v1.0"},
        "Experiment.treatment_version: got 'okla-v1.0', expected a model version different from control_version",
    ),
    (
        "Experiment",
        {"traffic_split": 150.0},
        "Experiment.traffic_split: got 150.0, expected a percentage",
    ),
    ("Alert", {"severity": "URGENT"}, "Alert.severity: got 'URGENT', expected one of ['CRITICAL'"),
    (
        "DriftSignal",
        {"value": float("nan")},
        "DriftSignal.value: got nan, expected a finite number",
    ),
]


@pytest.mark.parametrize(("name", "change", "message"), BAD)
def test_invalid_events_are_refused_naming_field_and_value(
    name: str, change: dict, message: str
) -> None:
    record = {**EXAMPLES[name], **change}
    with pytest.raises(EventValidationError) as info:
        AvroSerializer().encode(name, record)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.field == next(iter(change))


def test_missing_required_field_is_named() -> None:
    record = dict(EXAMPLES["ChatTurn"])
    del record["bot_response"]
    with pytest.raises(
        EventValidationError,
        match=r"ChatTurn.bot_response: got None, expected a value: the field is required",
    ):
        AvroSerializer().encode("ChatTurn", record)
    with pytest.raises(
        EventValidationError, match=r"ChatTurn.model_version: got '  ', expected a non-empty"
    ):
        AvroSerializer().encode("ChatTurn", {**EXAMPLES["ChatTurn"], "model_version": "  "})


def test_feature_values_keep_their_type() -> None:
    features = {"big": 2**53 + 1, "flag": True, "ratio": 0.25, "zone": "norte", "missing": None}
    data = AvroSerializer().encode("Prediction", {**EXAMPLES["Prediction"], "features": features})
    out = AvroDeserializer().decode(data).record["features"]
    assert out == features
    assert [type(v) for v in out.values()] == [int, bool, float, str, type(None)]


# -- decoding garbage -------------------------------------------------------------------------

GOOD = AvroSerializer().encode("ChatTurn", EXAMPLES["ChatTurn"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty record value"),
        (b'{"json": true}', "unknown wire format: first byte 0x7b"),
        (GOOD[:7], "truncated single-object header"),
        (GOOD[:-4], "corrupt ChatTurn body"),
        (GOOD + b"\x00", "corrupt ChatTurn body: 1 trailing bytes"),
        (
            b"\xc3\x01" + b"\x11" * 8 + GOOD[10:],
            "unknown writer schema fingerprint 1111111111111111",
        ),
        (b"\x00\x00\x00", "truncated Confluent header"),
    ],
)
def test_undecodable_bytes_raise_decode_error_with_reason(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message.replace("(", r"\(")):
        AvroDeserializer().decode(data)


def test_decoded_record_that_breaks_semantics_is_rejected() -> None:
    data = AvroSerializer().encode(
        "Feedback", {**EXAMPLES["Feedback"], "rating": 0}, validate=False
    )
    with pytest.raises(DecodeError, match=r"invalid Feedback: Feedback.rating: got 0"):
        AvroDeserializer().decode(data)


def test_wrong_record_type_for_topic() -> None:
    with pytest.raises(DecodeError, match="record is a ChatTurn, this topic carries Feedback"):
        AvroDeserializer().decode(GOOD, expected="Feedback")


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_escape_as_other_exceptions(data: bytes) -> None:
    try:
        AvroDeserializer().decode(data)
    except DecodeError:
        pass


def test_services_read_confluent_framing_when_a_registry_is_configured() -> None:
    assert deserializer_for("").registry is None
    assert deserializer_for("http://schema-registry:8081").registry is not None
