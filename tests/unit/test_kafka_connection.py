"""One Kafka connection for every client: settings -> librdkafka properties and Faust
credentials, secrets from files, contradictions refused naming the settings, nothing secret in a
repr or a redacted dump."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from continuum.kafka import Connection, ConnectionError, client_config, explain_refusal
from continuum.retry import is_transient
from continuum.settings import Settings
from streams.kafka_auth import OidcTokenProvider, faust_credentials

SCRAM = {
    "CONTINUUM_BOOTSTRAP_SERVERS": "kafka-1:9094,kafka-2:9094",
    "CONTINUUM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "CONTINUUM_KAFKA_SASL_MECHANISM": "scram-sha-512",
    "CONTINUUM_KAFKA_SASL_USERNAME": "continuum",
}


def test_plaintext_by_default() -> None:
    conn = Settings.from_env({}).kafka
    assert conn.librdkafka() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "plaintext",
    }
    assert conn.ssl_context() is None and faust_credentials(conn) is None


def test_scram_over_tls_with_the_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cr3t-pw\n")  # a secrets mount often ends with a newline
    env = {**SCRAM, "CONTINUUM_KAFKA_SASL_PASSWORD_FILE": str(secret)}
    settings = Settings.from_env(env)
    conf = settings.kafka.librdkafka()
    assert conf["security.protocol"] == "sasl_ssl"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("continuum", "s3cr3t-pw")
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    # The secret shows nowhere a log could take it from.
    for text in (repr(settings), str(settings.redacted()), repr(settings.kafka)):
        assert "s3cr3t-pw" not in text
    assert settings.kafka.redacted()["sasl_password"] == "***"
    creds = faust_credentials(settings.kafka)
    assert type(creds).__name__ == "SASLCredentials"
    assert creds.mechanism.value == "SCRAM-SHA-512" and creds.protocol.value == "SASL_SSL"
    assert isinstance(creds.ssl_context, ssl.SSLContext)


def test_an_unreadable_secret_file_is_named(tmp_path: Path) -> None:
    env = {**SCRAM, "CONTINUUM_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")}
    with pytest.raises(ValueError, match="CONTINUUM_KAFKA_SASL_PASSWORD_FILE"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (SCRAM, ("CONTINUUM_KAFKA_SASL_USERNAME", "CONTINUUM_KAFKA_SASL_PASSWORD")),
        (
            {"CONTINUUM_KAFKA_SASL_MECHANISM": "PLAIN"},
            ("CONTINUUM_KAFKA_SASL_MECHANISM", "CONTINUUM_KAFKA_SECURITY_PROTOCOL"),
        ),
        ({"CONTINUUM_KAFKA_SECURITY_PROTOCOL": "TLS"}, ("CONTINUUM_KAFKA_SECURITY_PROTOCOL",)),
        (
            {
                "CONTINUUM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CONTINUUM_KAFKA_SASL_MECHANISM": "GSSAPI",
            },
            ("CONTINUUM_KAFKA_SASL_MECHANISM",),
        ),
        (
            {
                "CONTINUUM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CONTINUUM_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                "CONTINUUM_KAFKA_OAUTH_CLIENT_ID": "c",
            },
            ("CONTINUUM_KAFKA_OAUTH_TOKEN_URL",),
        ),
        (
            {"CONTINUUM_LIBRDKAFKA_SASL_PASSWORD": "x"},
            ("CONTINUUM_LIBRDKAFKA_SASL_PASSWORD", "sasl.password"),
        ),
    ],
)
def test_contradictory_settings_are_refused_naming_them(
    env: dict[str, str], named: tuple[str, ...]
) -> None:
    with pytest.raises(ConnectionError) as err:
        _ = Settings.from_env(env).kafka
    for name in named:
        assert name in str(err.value)


def test_a_certificate_without_its_key_names_both(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "CONTINUUM_KAFKA_SECURITY_PROTOCOL": "SSL",
        "CONTINUUM_KAFKA_SSL_CERTIFICATE_LOCATION": str(cert),
    }
    with pytest.raises(ConnectionError) as err:
        _ = Settings.from_env(env).kafka
    assert "CONTINUUM_KAFKA_SSL_CERTIFICATE_LOCATION" in str(err.value)
    assert "CONTINUUM_KAFKA_SSL_KEY_LOCATION" in str(err.value)
    env["CONTINUUM_KAFKA_SSL_CA_LOCATION"] = str(tmp_path / "nope.pem")
    with pytest.raises(ConnectionError, match="nope.pem: no such file"):
        _ = Settings.from_env(env).kafka


def test_oauthbearer_goes_to_librdkafka_oidc_and_to_a_faust_token_provider() -> None:
    env = {
        "CONTINUUM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CONTINUUM_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "CONTINUUM_KAFKA_OAUTH_TOKEN_URL": "https://idp.example/oauth2/token",
        "CONTINUUM_KAFKA_OAUTH_CLIENT_ID": "continuum",
        "CONTINUUM_KAFKA_OAUTH_CLIENT_SECRET": "oidc-secret",
        "CONTINUUM_KAFKA_OAUTH_SCOPE": "kafka",
    }
    conn = Settings.from_env(env).kafka
    conf = conn.librdkafka()
    assert conf["sasl.oauthbearer.method"] == "oidc"
    assert conf["sasl.oauthbearer.client.secret"] == "oidc-secret"
    assert conf["sasl.oauthbearer.scope"] == "kafka"
    creds = faust_credentials(conn)
    assert isinstance(creds.oauth_cb, OidcTokenProvider)
    assert "oidc-secret" not in repr(conn) + repr(creds)


def test_passthrough_properties_reach_every_client_and_secret_ones_are_masked() -> None:
    env = {
        "CONTINUUM_LIBRDKAFKA_SOCKET_KEEPALIVE_ENABLE": "true",
        "CONTINUUM_LIBRDKAFKA_CLIENT_RACK": "use1-az1",
        "CONTINUUM_LIBRDKAFKA_SSL_KEYSTORE_PASSWORD": "ks-secret",
    }
    settings = Settings.from_env(env)
    conf = client_config(settings, {"group.id": "g"})
    assert conf["socket.keepalive.enable"] == "true" and conf["client.rack"] == "use1-az1"
    assert conf["group.id"] == "g" and "error_cb" in conf  # the throttled error log
    assert "ks-secret" not in repr(settings) and "ks-secret" not in str(settings.kafka.redacted())


def test_schema_registry_credentials(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    token = tmp_path / "token"
    token.write_text("tok-123")
    basic = Settings.from_env(
        {
            "CONTINUUM_SCHEMA_REGISTRY_USERNAME": "KEY",
            "CONTINUUM_SCHEMA_REGISTRY_PASSWORD": "SECRET",
            "CONTINUUM_SCHEMA_REGISTRY_CA_LOCATION": str(ca),
        }
    )
    assert basic.registry_conf == {
        "basic.auth.user.info": "KEY:SECRET",
        "ssl.ca.location": str(ca),
    }
    bearer = Settings.from_env({"CONTINUUM_SCHEMA_REGISTRY_TOKEN_FILE": str(token)})
    assert bearer.registry_conf["bearer.auth.token"] == "tok-123"
    assert "tok-123" not in repr(bearer) and "SECRET" not in repr(basic)
    with pytest.raises(ValueError, match="not both"):
        _ = Settings.from_env(
            {"CONTINUUM_SCHEMA_REGISTRY_USERNAME": "k", "CONTINUUM_SCHEMA_REGISTRY_TOKEN": "t"}
        ).registry_conf


def test_refusals_are_explained_and_never_retried() -> None:
    conn = Connection(
        "b:9094",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u",
        sasl_password="p",
        ssl_ca_location="",
    )
    auth = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials")
    tls = KafkaError(KafkaError._SSL, "SSL handshake failed: certificate verify failed")
    assert "CONTINUUM_KAFKA_SASL_PASSWORD" in (explain_refusal(conn, auth) or "")
    assert "CONTINUUM_KAFKA_SSL_CA_LOCATION" in (explain_refusal(conn, tls) or "")
    assert explain_refusal(conn, KafkaError(KafkaError._TRANSPORT, "down")) is None
    from confluent_kafka import KafkaException

    assert not is_transient(KafkaException(auth))
    assert is_transient(KafkaException(KafkaError(KafkaError._TRANSPORT, "down")))
