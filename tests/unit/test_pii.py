"""Personal data found and redacted before events reach Kafka: every type with positives and
near misses, keyed placeholders that still join, the per-field policy, and the SDK applying it."""

from __future__ import annotations

import pytest

from continuum.settings import Settings
from producers import EventProducer
from producers.pii import (
    CARD,
    CEDULA,
    EMAIL,
    PHONE,
    PLATE,
    PIIRejected,
    Redactor,
    find_pii,
    parse_policy,
    redact_text,
)
from schemas.serde import AvroDeserializer
from tests.examples import EXAMPLES
from tests.unit.fakes import FakeClient

POSITIVES = [
    ("escríbeme a juan.perez@gmail.com", EMAIL, "juan.perez@gmail.com"),
    ("correo: ANA_MARIA+autos@okla.com.do.", EMAIL, "ANA_MARIA+autos@okla.com.do"),
    ("llámame al 809-555-1234", PHONE, "809-555-1234"),
    ("mi cel (829) 555 1234 gracias", PHONE, "(829) 555 1234"),
    ("whatsapp +1 849.555.1234", PHONE, "+1 849.555.1234"),
    ("8095551234", PHONE, "8095551234"),
    ("desde España +34 612 345 678", PHONE, "+34 612 345 678"),
    ("cédula 001-1234567-8", CEDULA, "001-1234567-8"),
    ("cédula 00112345673", CEDULA, "00112345673"),  # valid check digit
    ("visa 4111 1111 1111 1111", CARD, "4111 1111 1111 1111"),
    ("amex 3782-822463-10005", CARD, "3782-822463-10005"),
    ("la placa es A123456", PLATE, "A123456"),
    ("yipeta G-654321 negra", PLATE, "G-654321"),
]

NEAR_MISSES = [
    "orden 1234567890 lista",  # 10 digits, no Dominican area code, no +
    "tarjeta 4111 1111 1111 1112",  # fails Luhn
    "ref 00112345674",  # 11 digits, wrong check digit
    "Corolla 2018 por RD$850,000",
    "años 2018, 2019 y 2020, km 123456",
    "modelo AB123456 y X12345",  # two letters / five digits: not a plate
    "versión 1.809.555",
    "email@localhost",  # no domain
    "teléfono 555-1234",  # no area code
]


@pytest.mark.parametrize(("text", "kind", "value"), POSITIVES)
def test_each_type_is_found(text: str, kind: str, value: str) -> None:
    found = find_pii(text)
    assert [(f.type, f.value) for f in found] == [(kind, value)]


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_are_left_alone(text: str) -> None:
    assert find_pii(text) == []
    assert redact_text(text, b"k") == (text, [])


def test_placeholders_join_the_same_value_only_with_a_key() -> None:
    a, _ = redact_text("llama al 809-555-1234", b"secret")
    b, _ = redact_text("o al +1 (809) 555 1234", b"secret")
    c, _ = redact_text("o al 809-555-9999", b"secret")
    tag = a.split()[-1]
    assert tag.startswith("<PHONE:") and b.endswith(tag) and not c.endswith(tag)
    other, _ = redact_text("llama al 809-555-1234", b"other key")
    assert other != a
    assert redact_text("llama al 809-555-1234")[0] == "llama al <PHONE>"


def test_policy_defaults_overrides_and_errors() -> None:
    p = parse_policy("redact", "ChatTurn.bot_response=off, Feedback.comment=reject")
    assert p["ChatTurn.user_query"] == "redact" and p["ChatTurn.bot_response"] == "off"
    assert p["Feedback.comment"] == "reject"
    with pytest.raises(ValueError, match="pii_redaction 'hide'"):
        parse_policy("hide")
    with pytest.raises(ValueError, match="pii_fields 'user_query=redact'"):
        parse_policy("redact", "user_query=redact")


def test_reject_names_the_field_and_type_never_the_value() -> None:
    r = Redactor(parse_policy("redact", "ChatTurn.user_query=reject"))
    turn = {**EXAMPLES["ChatTurn"], "user_query": "mi tarjeta 4111 1111 1111 1111"}
    with pytest.raises(PIIRejected) as err:
        r.apply("ChatTurn", turn)
    assert "ChatTurn.user_query holds personal data (CARD)" in str(err.value)
    assert "4111" not in str(err.value)
    assert r.counts == {CARD: 1}


def test_the_sdk_redacts_user_text_before_kafka() -> None:
    fake = FakeClient()
    settings = Settings(pii_hash_key="k1", pii_fields="ChatTurn.bot_response=off")
    producer = EventProducer(
        "unused",
        client=fake,
        publish_schemas=False,
        redactor=Redactor.from_settings(settings),
    )
    turn = {
        **EXAMPLES["ChatTurn"],
        "user_query": "Klk, soy Ana, ana@gmail.com, cel 829-555-0000",
        "bot_response": "Te llamamos al 829-555-0000",
    }
    sent = producer.send("ChatTurn", turn)
    producer.flush()
    on_kafka = AvroDeserializer().decode(fake.sent[0][1]).record
    assert on_kafka["user_query"] == sent["user_query"]
    assert on_kafka["user_query"].startswith("Klk, soy Ana, <EMAIL:")
    assert "ana@gmail.com" not in on_kafka["user_query"] and "<PHONE:" in on_kafka["user_query"]
    assert on_kafka["bot_response"] == "Te llamamos al 829-555-0000"  # off for this field
    assert turn["user_query"].endswith("829-555-0000")  # the caller's dict is not changed
    # Default producer: redaction on, type-only placeholders.
    plain = EventProducer("unused", client=FakeClient(), publish_schemas=False)
    assert plain.send("ChatTurn", turn)["bot_response"] == "Te llamamos al <PHONE>"
