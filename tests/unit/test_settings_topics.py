from __future__ import annotations

from pathlib import Path

import pytest

from continuum.cli import build_parser
from continuum.settings import Settings
from continuum.topics import TOPICS, all_specs, topic_for_schema, topic_spec


def test_settings_from_env_and_overrides() -> None:
    s = Settings.from_env(
        {
            "CONTINUUM_BOOTSTRAP_SERVERS": "h:1",
            "CONTINUUM_KAFKA_PORT": "19092",
            "CONTINUUM_HOME": "/tmp/x",
        },
        topic_prefix="p-",
    )
    assert (s.bootstrap_servers, s.kafka_port, s.home, s.topic_prefix) == (
        "h:1",
        19092,
        Path("/tmp/x"),
        "p-",
    )


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="CONTINUUM_KAFKA_PORT='abc': expected an integer"):
        Settings.from_env({"CONTINUUM_KAFKA_PORT": "abc"})


def test_secrets_never_show() -> None:
    s = Settings(slack_webhook_url="https://hooks.example/T000/SECRET", api_token="tok-9f8e7d")
    assert "SECRET" not in repr(s) and "tok-9f8e7d" not in repr(s)
    assert s.redacted()["slack_webhook_url"] == "***"


def test_topics_are_declared_once_with_policies() -> None:
    names = [t.name for t in all_specs()]
    assert len(names) == len(set(names))
    assert {t.name for t in TOPICS if t.cleanup_policy == "compact"} == {
        "baselines",
        "experiments",
        "model-registry",
        "retrain-triggers",
        "schemas",
        "thresholds",
    }
    assert topic_for_schema("ChatTurn").key_field == "session_id"
    # Alert requests carry Alert records too; the Alert type's own topic stays "alerts".
    assert topic_for_schema("Alert").name == "alerts"
    assert topic_spec("alert-requests").key_field == "dedup_key"
    assert topic_spec("chat.turns").dlq_name("p-") == "p-chat.turns.dlq"
    assert topic_spec("baselines").config()["cleanup.policy"] == "compact"
    with pytest.raises(KeyError, match="unknown topic 'nope'"):
        topic_spec("nope")


def test_every_cli_flag_names_its_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["topics", "create", "--help"])
    out = capsys.readouterr().out
    for var in (
        "CONTINUUM_BOOTSTRAP_SERVERS",
        "CONTINUUM_TOPIC_PREFIX",
        "CONTINUUM_SCHEMA_REGISTRY_URL",
    ):
        assert var in out
    assert "SLACK" not in out  # secrets come from the environment only


def test_service_flags_are_typed_like_their_settings() -> None:
    from continuum.cli.common import service_settings as _service_settings
    from continuum.cli.common import time_ms as _time_ms
    from inference.settings import InferenceSettings

    args = build_parser().parse_args(
        ["infer", "worker", "--emit-turns", "false", "--slots", "2", "--request-timeout-s", "2.5"]
    )
    s = _service_settings(args, Settings(), InferenceSettings)
    assert (s.emit_turns, s.slots, s.request_timeout_s) == (False, 2, 2.5)
    bad = build_parser().parse_args(["infer", "worker", "--slots", "two"])
    with pytest.raises(ValueError, match="expected an integer"):
        _service_settings(bad, Settings(), InferenceSettings)
    assert _time_ms("1767225600000") == 1767225600000
    assert _time_ms("2026-01-01T00:00") == 1767225600000
    with pytest.raises(ValueError, match="expected ISO-8601"):
        _time_ms("yesterday")


def test_streams_workers_advertise_a_reachable_url() -> None:
    import socket

    from streams.settings import StreamsSettings

    assert StreamsSettings(web_port=7000).canonical_url() == "http://127.0.0.1:7000"
    wildcard = StreamsSettings(web_host="0.0.0.0", web_port=6066)
    assert wildcard.canonical_url() == f"http://{socket.gethostname()}:6066"
    pod = StreamsSettings(web_host="0.0.0.0", advertised_host="10.1.2.3")
    assert pod.canonical_url() == "http://10.1.2.3:6066"
