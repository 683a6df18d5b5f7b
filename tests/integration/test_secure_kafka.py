"""Continuum against a secured Kafka: the embedded broker's SASL_SSL listener (SCRAM-SHA-512, a
CA of its own, hostname verification on). Every service connects with the same settings, the
secrets never reach a log, the gateway asks for an API key, and a wrong password or an untrusted CA stops a service at start-up
with one line naming the setting."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from continuum.admin import TopicAdmin
from continuum.demo.chat import SimulatorConfig
from continuum.localkafka import LocalKafka, free_port
from continuum.topics import all_specs
from producers.producer import EventProducer
from streams.logic.alerts import raise_request
from tests.integration.conftest import wait_for
from tests.integration.fakes import FakeSlack
from tests.integration.inference_procs import GatewayProc, InferenceWorkerProc
from tests.integration.streams_worker import StreamsWorker
from tests.integration.traffic import Feed, archived, cli_child, wait_exact, wait_part_way

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory):
    kafka = LocalKafka(
        tmp_path_factory.mktemp("secure"),
        port=free_port(),
        controller_port=free_port(),
        secure_port=free_port(),
    )
    kafka.start(timeout=180)
    yield kafka
    kafka.stop()


def continuum(env: dict[str, str], *argv: str, timeout: float = 120) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "continuum.cli", *argv],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def test_every_service_runs_over_sasl_ssl_and_no_secret_is_logged(
    secure: LocalKafka, tmp_path: Path
) -> None:
    conn = secure.secure_connection()
    env = secure.client_env()
    prefix = "sec-"
    TopicAdmin(conn, prefix).create(all_specs())
    home = tmp_path / "home"
    hook = FakeSlack()
    worker = StreamsWorker(conn.bootstrap_servers, prefix, home, env=env)
    inference = InferenceWorkerProc(conn.bootstrap_servers, prefix, env=env)
    keys = tmp_path / "gateway.keys"
    keys.write_text("chatbot:sk-chatbot-123\nci:sk-ci-456\n")
    gateway = GatewayProc(
        conn.bootstrap_servers, prefix, env={**env, "CONTINUUM_GATEWAY_API_KEYS_FILE": str(keys)}
    )
    archive = cli_child(
        conn.bootstrap_servers, prefix, home, "archive", "--topics", "chat.turns", **env
    )
    alerts = cli_child(
        conn.bootstrap_servers,
        prefix,
        home,
        "alerts",
        "webhook",
        CONTINUUM_WEBHOOK_URL=hook.url,
        **env,
    )
    children = [worker, inference, gateway, archive, alerts]
    try:
        wait_for(worker.ready, 120, what=lambda: "streams worker:\n" + worker.tail())
        wait_for(lambda: worker.get("/health/")[1]["partitions"], 90, what=worker.tail)
        for proc in (inference, gateway):
            wait_for(proc.up, 180, 0.3, what=lambda p=proc: f"{p.what} up:\n{p.tail()}")
        # The SDK producer (A/B traffic), stage 1 and stage 2 (Faust) over SASL_SSL.
        with Feed(conn, prefix, SimulatorConfig(turns=3000, rate=1000, seed=5)) as feed:
            wait_part_way(worker, 500)
            expected = feed.finish()
        wait_exact(worker, expected, 120)
        # The inference path: gateway -> request topic -> worker -> reply topic -> gateway
        # (a model outside the simulator's experiment, which names models no worker serves).
        body = {"model": "any", "messages": [{"role": "user", "content": "Hola"}], "max_tokens": 4}
        assert gateway.chat(body)[0] == 401  # no key
        status, refused = gateway.chat(body, {"Authorization": "Bearer sk-guess"})
        assert status == 401 and refused["error"]["code"] == "invalid_api_key", refused
        status, answer = gateway.chat(body, {"Authorization": "Bearer sk-chatbot-123"})
        assert status == 200, answer
        # The archive and the alert consumer.
        wait_for(lambda: len(archived(home, "chat.turns")) >= expected[0], 90, what=archive.tail)
        with EventProducer(conn, topic_prefix=prefix) as p:
            p.send(
                "Alert",
                raise_request("SERVICE_DOWN", "HIGH", "sec:probe", "probe", int(time.time() * 1e3)),
                topic="alert-requests",
            )
        wait_for(
            lambda: any(m["dedup_key"] == "sec:probe" for m in list(hook.accepted)),
            60,
            what=lambda: alerts.tail() + worker.tail(),
        )
        for child in children:
            child.check_alive("a service over SASL_SSL")
    finally:
        for child in children:
            child.stop()
        hook.close()
    password = conn.sasl_password
    assert password
    for child in children:
        log = "".join(child.lines)
        assert password not in log, "the SASL password reached a log"
        assert "sk-chatbot-123" not in log and "sk-guess" not in log, "an API key reached a log"
        assert "Authentication failed" not in log


def test_a_wrong_password_stops_a_service_at_once_naming_the_setting(
    secure: LocalKafka, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    env = {
        **secure.client_env(),
        "CONTINUUM_KAFKA_SASL_PASSWORD_FILE": str(wrong),
        "CONTINUUM_HOME": str(tmp_path),
    }
    for argv in (("topics", "list"), ("streams", "worker", "--web-port", str(free_port()))):
        rc, out, took = continuum(env, *argv)
        lines = [line for line in out.splitlines() if line.strip()]
        assert rc == 1, out
        assert "CONTINUUM_KAFKA_SASL_PASSWORD" in out and "refused" in out, out
        assert len(lines) <= 3, out
        assert "not-the-password" not in out
        assert took < 30, f"{argv}: {took:.0f}s"


def test_an_untrusted_ca_stops_a_service_at_once_naming_the_setting(
    secure: LocalKafka, tmp_path: Path
) -> None:
    other = LocalKafka(tmp_path / "other")  # only for its keytool-made CA
    other.make_tls()
    env = {
        **secure.client_env(),
        "CONTINUUM_KAFKA_SSL_CA_LOCATION": str(other.tls_dir / "ca.pem"),
        "CONTINUUM_HOME": str(tmp_path),
    }
    rc, out, took = continuum(env, "archive", "--topics", "chat.turns")
    assert rc == 1, out
    assert "CONTINUUM_KAFKA_SSL_CA_LOCATION" in out and "not trusted" in out, out
    assert took < 30, took


def test_contradictory_settings_are_refused_naming_both(tmp_path: Path) -> None:
    env = {
        "CONTINUUM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CONTINUUM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CONTINUUM_KAFKA_SASL_USERNAME": "someone",
        "CONTINUUM_HOME": str(tmp_path),
    }
    rc, out, took = continuum(env, "topics", "list", timeout=60)
    assert rc == 1
    assert "CONTINUUM_KAFKA_SASL_USERNAME" in out and "CONTINUUM_KAFKA_SASL_PASSWORD" in out, out
    assert took < 20
