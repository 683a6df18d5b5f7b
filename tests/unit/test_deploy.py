"""Static checks of docker-compose.yml against the code (no Docker engine runs here)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from continuum.cli import build_parser
from continuum.settings import Settings
from inference.settings import InferenceSettings
from streams.settings import StreamsSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
KNOWN_ENV = {
    Settings.env_name(f.name) for cls in (StreamsSettings, InferenceSettings) for f in fields(cls)
}
DOCKERFILE = (ROOT / "Dockerfile").read_text()
TARGETS = set(re.findall(r"^FROM \S+ AS (\w+)", DOCKERFILE, flags=re.M))


def _builds_here(svc: dict) -> bool:
    build = svc.get("build")
    return build == "." or (isinstance(build, dict) and build.get("context") == ".")


PROJECT_SERVICES = {name: svc for name, svc in COMPOSE["services"].items() if _builds_here(svc)}


def test_project_services_exist_and_build_from_the_dockerfile() -> None:
    assert {"topics", "simulator", "streams", "inference-worker", "gateway", "model-export"} <= set(
        PROJECT_SERVICES
    )
    for name, svc in PROJECT_SERVICES.items():
        build = svc["build"]
        if isinstance(build, dict) and "target" in build:
            assert build["target"] in TARGETS, f"{name}: no Dockerfile stage {build['target']!r}"


def test_inference_worker_runs_vllm_on_a_reserved_gpu() -> None:
    svc = COMPOSE["services"]["inference-worker"]
    args = build_parser().parse_args(svc["command"])
    assert args.svc_engine == "vllm"
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    # The model folder it reads is the one model-export writes, on the same volume.
    export = build_parser().parse_args(COMPOSE["services"]["model-export"]["command"])
    assert export.out == args.svc_model_path
    assert svc["volumes"] == COMPOSE["services"]["model-export"]["volumes"]


@pytest.mark.parametrize("name", sorted(PROJECT_SERVICES))
def test_service_command_is_a_real_cli_invocation(name: str) -> None:
    # argparse exits on an unknown subcommand or flag; this parses exactly what the container runs.
    args = build_parser().parse_args(PROJECT_SERVICES[name]["command"])
    assert callable(args.handler)


@pytest.mark.parametrize("name", sorted(PROJECT_SERVICES))
def test_service_environment_is_read_by_the_code(name: str) -> None:
    env = PROJECT_SERVICES[name].get("environment", {})
    unknown = sorted(set(env) - KNOWN_ENV)
    assert unknown == [], f"{name}: variables no code reads: {unknown}"


def test_dependencies_name_real_services() -> None:
    for name, svc in COMPOSE["services"].items():
        for dep in svc.get("depends_on", {}):
            assert dep in COMPOSE["services"], f"{name} depends on unknown service {dep}"


def test_third_party_images_are_pinned_to_a_release() -> None:
    for name, svc in COMPOSE["services"].items():
        image = svc.get("image")
        if image is None:
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} has no pinned tag"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image!r} is not a release tag"
    base = re.findall(r"^FROM (\S+)", DOCKERFILE, flags=re.M)
    assert all(":" in b and not b.endswith(":latest") for b in base), base


def test_the_three_broker_override_is_one_consistent_cluster() -> None:
    """deploy/compose/kafka-ha.yml (on top of docker-compose.yml): three KRaft nodes that are each
    other's voters, replication 3 and min ISR 2 as Continuum derives for three brokers, and every
    service that talks to Kafka given all three brokers."""
    from continuum.admin import replication_for

    ha = yaml.safe_load((ROOT / "deploy/compose/kafka-ha.yml").read_text())["services"]
    nodes = {n: s for n, s in ha.items() if n == "kafka" or n.startswith("kafka-")}
    assert sorted(nodes) == ["kafka", "kafka-2", "kafka-3"]
    rf, isr = replication_for(len(nodes))
    voters = set()
    for name, svc in nodes.items():
        env = svc["environment"]
        node_id = env["KAFKA_NODE_ID"]
        voters.add(f"{node_id}@{name}:9093")
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == rf
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == rf
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == isr
        assert (svc.get("image") or COMPOSE["services"][name]["image"]) == COMPOSE["services"][
            "kafka"
        ]["image"]
    assert len(voters) == 3  # distinct node ids
    for svc in nodes.values():  # every node names the same three voters
        assert set(svc["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
    brokers = {f"{n}:9092" for n in nodes}
    for name, svc in COMPOSE["services"].items():
        if "CONTINUUM_BOOTSTRAP_SERVERS" in (svc.get("environment") or {}):
            env = ha[name]["environment"]
            assert set(env["CONTINUUM_BOOTSTRAP_SERVERS"].split(",")) == brokers, name


def _secret_env() -> set[str]:
    return {
        Settings.env_name(f.name) + "_FILE"
        for cls in (StreamsSettings, InferenceSettings)
        for f in fields(cls)
        if f.metadata.get("secret")
    }


def test_the_secure_override_connects_every_service_over_sasl_ssl() -> None:
    """deploy/compose/secure.yml: the broker gets a SASL_SSL listener whose keystore and
    passwords the one-shot `certs` service makes; every Continuum service connects to it with
    settings the code reads, the secrets by file from the mounted volume, and the files it names
    are the ones make-certs.sh writes."""
    secure = yaml.safe_load((ROOT / "deploy/compose/secure.yml").read_text())
    services = secure["services"]
    script = (ROOT / "deploy/compose/secure/make-certs.sh").read_text()
    props = (ROOT / "deploy/compose/secure/server.properties").read_text()
    kafka = services["kafka"]["environment"]
    assert "SECURE:SASL_SSL" in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert "SECURE://:9094" in kafka["KAFKA_LISTENERS"]
    assert "SECURE://kafka:9094" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert "listener.name.secure.sasl.enabled.mechanisms=SCRAM-SHA-512" in props
    made = set(
        re.findall(r"\b([\w.-]+\.(?:pem|p12|properties|password)|gateway-api-keys)\b", script)
    )
    for path in re.findall(r"/etc/kafka/secrets/([\w.-]+)", props):
        assert path in made, path
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["kafka"]["volumes"]}
    assert mounts["kafka-secrets"] == "/etc/kafka/secrets"
    assert "keytool" in script and "dns:kafka" in script  # hostname verification holds
    known = KNOWN_ENV | _secret_env()
    talking = [
        n
        for n, s in PROJECT_SERVICES.items()
        if "CONTINUUM_BOOTSTRAP_SERVERS" in (s.get("environment") or {})
    ]
    assert len(talking) >= 7
    for name in talking:
        svc = services.get(name)
        assert svc is not None, f"{name} is not connected by the secure override"
        env = svc["environment"]
        assert env["CONTINUUM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["CONTINUUM_BOOTSTRAP_SERVERS"] == "kafka:9094", name
        for var, value in env.items():
            if var.startswith("CONTINUUM_"):
                assert var in known, f"{name}: {var} is not a setting"
            if var.endswith(("_FILE", "_LOCATION")):
                assert value.startswith("/run/secrets/continuum/"), (name, var)
                assert value.rsplit("/", 1)[1] in made, (name, value)
        volumes = svc.get("volumes") or []
        assert "kafka-secrets:/run/secrets/continuum:ro" in volumes, name
    assert "CONTINUUM_GATEWAY_API_KEYS_FILE" in services["gateway"]["environment"]
    users = " ".join(services["kafka-users"]["command"])
    assert "SCRAM-SHA-512" in users and "client.password" in users
