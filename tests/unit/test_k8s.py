"""deploy/k8s (applied with `kubectl apply -k deploy/`), checked statically: every Continuum
container runs a real CLI invocation with env names the code reads, probes on the port it serves,
resource requests; Services select real pods on real ports; the GPU is requested; the kustomize
generators name files that exist and the Prometheus targets are Services."""

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
KUSTOMIZATION = yaml.safe_load((ROOT / "deploy/kustomization.yaml").read_text())
DOCS = [
    doc
    for res in KUSTOMIZATION["resources"]
    for doc in yaml.safe_load_all((ROOT / "deploy" / res).read_text())
    if doc
]
KNOWN_ENV = {
    Settings.env_name(f.name) for cls in (StreamsSettings, InferenceSettings) for f in fields(cls)
}
WORKLOADS = [d for d in DOCS if d["kind"] in ("Deployment", "StatefulSet", "Job")]
OURS = [
    (w["metadata"]["name"], c)
    for w in WORKLOADS
    for c in w["spec"]["template"]["spec"].get("initContainers", [])
    + w["spec"]["template"]["spec"]["containers"]
    if c["image"].startswith("continuum")
]
DOCKER_TARGETS = set(re.findall(r"^FROM \S+ AS (\w+)", (ROOT / "Dockerfile").read_text(), re.M))


def _by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in DOCS if d["kind"] == kind}


def test_every_manifest_is_named_and_namespaced() -> None:
    assert set(KUSTOMIZATION["resources"]) == {
        f"k8s/{p.name}" for p in (ROOT / "deploy/k8s").glob("*.yaml")
    }
    for d in DOCS:
        assert d["apiVersion"] and d["metadata"]["name"]
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "continuum", d["metadata"]["name"]
    names = {w["metadata"]["name"] for w in WORKLOADS}
    assert {"kafka", "schema-registry", "topics", "streams", "inference-worker", "gateway"} <= names
    assert {"alerts-slack", "archive", "prometheus", "grafana"} <= names


@pytest.mark.parametrize(("workload", "container"), OURS, ids=[f"{w}/{c['name']}" for w, c in OURS])
def test_continuum_containers_run_real_commands_with_known_env(
    workload: str, container: dict
) -> None:
    args = build_parser().parse_args(container["args"])
    assert callable(args.handler)
    image = container["image"].split(":")[0]
    assert image in ("continuum", "continuum-vllm")
    assert ("vllm" if image == "continuum-vllm" else "app") in DOCKER_TARGETS
    env = {e["name"] for e in container.get("env", [])}
    for ref in container.get("envFrom", []):
        env |= set(_by_kind("ConfigMap")[ref["configMapRef"]["name"]]["data"])
    assert env - KNOWN_ENV == set(), f"{workload}: variables no code reads: {env - KNOWN_ENV}"
    for e in container.get("env", []):
        secret = e.get("valueFrom", {}).get("secretKeyRef")
        if secret:
            assert secret["key"] in _by_kind("Secret")[secret["name"]]["stringData"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])


def test_long_running_containers_have_probes_on_the_port_they_serve() -> None:
    for w in WORKLOADS:
        if w["kind"] == "Job":
            continue
        for c in w["spec"]["template"]["spec"]["containers"]:
            assert "livenessProbe" in c, f"{w['metadata']['name']}: no liveness probe"
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
            ports = {p["containerPort"] for p in c.get("ports", [])}
            for kind in ("readinessProbe", "livenessProbe"):
                probe = c.get(kind, {})
                port = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
                if port is not None:
                    assert port in ports, f"{w['metadata']['name']} {kind} on {port} not {ports}"
            if c["image"].startswith("continuum") and ports:
                args = " ".join(c["args"])
                assert all(str(p) in args for p in ports), f"{w['metadata']['name']}: {args}"


def test_services_select_pods_on_their_container_ports() -> None:
    for name, svc in _by_kind("Service").items():
        pods = [
            w
            for w in WORKLOADS
            if w["kind"] != "Job"
            and svc["spec"]["selector"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert pods, f"service {name} selects no pods"
        ports = {
            p["containerPort"]
            for c in pods[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, f"service {name}: no container port {p['targetPort']}"


def test_inference_worker_gets_a_gpu_and_the_model_its_init_container_exports() -> None:
    w = next(w for w in WORKLOADS if w["metadata"]["name"] == "inference-worker")
    spec = w["spec"]["template"]["spec"]
    worker = spec["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = build_parser().parse_args(worker["args"])
    export = build_parser().parse_args(spec["initContainers"][0]["args"])
    assert args.svc_engine == "vllm" and export.out == args.svc_model_path


def test_prometheus_targets_are_services_and_generated_files_exist() -> None:
    for gen in KUSTOMIZATION["configMapGenerator"]:
        for f in gen["files"]:
            assert (ROOT / "deploy" / f).exists(), f
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    services = _by_kind("Service")
    for job in prom["scrape_configs"]:
        hosts = [t.split(":")[0] for sc in job.get("static_configs", []) for t in sc["targets"]]
        hosts += [n for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
        for host in hosts:
            assert host in services, f"{job['job_name']}: no Service {host}"
        for sd in job.get("dns_sd_configs", []):
            for n in sd["names"]:  # A records of a headless service = every pod
                assert services[n]["spec"].get("clusterIP") == "None"
    grafana_ds = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert grafana_ds["datasources"][0]["url"].split("//")[1].split(":")[0] in services


def test_images_match_compose_and_are_pinned() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    pinned = {s["image"] for s in compose["services"].values() if "image" in s}
    for w in WORKLOADS:
        for c in w["spec"]["template"]["spec"]["containers"]:
            if not c["image"].startswith("continuum"):
                assert c["image"] in pinned, f"{c['image']} differs from docker-compose.yml"


def test_kafka_is_three_nodes_replicating_three_times_with_two_in_sync() -> None:
    """Every node is a voter reachable at its pod's stable name through the headless service,
    and the cluster's replication defaults are the ones Continuum derives for three brokers."""
    from continuum.admin import replication_for

    kafka = _by_kind("StatefulSet")["kafka"]
    spec = kafka["spec"]
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    n = spec["replicas"]
    assert n == 3 and spec["podManagementPolicy"] == "Parallel"
    headless = _by_kind("Service")[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert voters == [
        f"{i + 1}@kafka-{i}.{spec['serviceName']}.continuum.svc:9093" for i in range(n)
    ]
    # The node id is the ordinal + 1, the advertised name the pod's own.
    script = " ".join(container["args"])
    assert "KAFKA_NODE_ID=$(( ${HOSTNAME##*-} + 1 ))" in script
    assert f"${{HOSTNAME}}.{spec['serviceName']}.continuum.svc:9092" in script
    rf, isr = replication_for(n)
    assert (rf, isr) == (3, 2)
    assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]
    assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == rf
    assert (
        int(env["KAFKA_MIN_INSYNC_REPLICAS"])
        == int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"])
        == isr
    )
    assert len(env["CLUSTER_ID"]) == 22  # a base64 UUID, the same on every node


def test_the_secure_overlay_mounts_the_credentials_into_every_continuum_container() -> None:
    """deploy/secure/: the connection ConfigMap patch names settings the code reads, with the
    secret ones by file under the mount; every Continuum workload (real name, real container)
    mounts the continuum-kafka Secret there; the Secret keys the files name are the ones the
    overlay's instructions create."""
    overlay = ROOT / "deploy/secure"
    kust = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    assert kust["resources"] == [".."]
    for patch in kust["patches"]:
        assert (overlay / patch["path"]).exists(), patch
    conn = yaml.safe_load((overlay / "connection.yaml").read_text())
    assert conn["metadata"]["name"] == "continuum-env"
    secret_files = {
        Settings.env_name(f.name) + "_FILE"
        for cls in (StreamsSettings, InferenceSettings)
        for f in fields(cls)
        if f.metadata.get("secret")
    }
    instructions = (overlay / "kustomization.yaml").read_text()
    for var, value in conn["data"].items():
        assert var in KNOWN_ENV | secret_files, var
        if var.endswith(("_FILE", "_LOCATION")):
            assert value.startswith("/etc/continuum/kafka/"), var
            assert f"--from-file={value.rsplit('/', 1)[1]}=" in instructions, value
    assert conn["data"]["CONTINUUM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    patches = [d for d in yaml.safe_load_all((overlay / "mounts.yaml").read_text()) if d]
    patched = {(p["kind"], p["metadata"]["name"]): p for p in patches}
    ours = {
        (w["kind"], w["metadata"]["name"])
        for w in WORKLOADS
        if any(
            c["image"].startswith("continuum") for c in w["spec"]["template"]["spec"]["containers"]
        )
    }
    assert set(patched) == ours
    for (kind, name), patch in patched.items():
        base = next(w for w in WORKLOADS if (w["kind"], w["metadata"]["name"]) == (kind, name))
        names = {c["name"] for c in base["spec"]["template"]["spec"]["containers"]}
        spec = patch["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["name"] in names, (name, container["name"])
        (mount,) = container["volumeMounts"]
        assert mount["mountPath"] == "/etc/continuum/kafka" and mount["readOnly"]
        (volume,) = spec["volumes"]
        assert volume["name"] == mount["name"]
        assert volume["secret"]["secretName"] == "continuum-kafka"
