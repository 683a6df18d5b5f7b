"""deploy/prometheus: every metric a rule uses is one the code exports; every scrape target is a
compose service on the port its command serves."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from inference.gateway import GatewayMetrics
from inference.metrics import LlmMetrics
from streams.metrics import StreamsMetrics

ROOT = Path(__file__).resolve().parents[2]
PROM = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
RULES = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMQL_WORDS = {
    "sum",
    "rate",
    "increase",
    "by",
    "le",
    "histogram_quantile",
    "clamp_min",
    "up",
    "job",
    "avg",
    "max",
    "min",
}


def exported() -> set[str]:
    names: set[str] = set()
    for make in (LlmMetrics, GatewayMetrics, StreamsMetrics):
        registry = CollectorRegistry()
        make(registry=registry)
        for metric in registry.collect():
            # Labelled metrics have no samples until used: derive the exposed names.
            names.add(metric.name)
            names.update(sample.name for sample in metric.samples)
            if metric.type == "counter":
                names.add(metric.name + "_total")
            if metric.type == "histogram":
                names.update(metric.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def test_every_rule_uses_exported_metrics() -> None:
    names = exported()
    rules = [r for g in RULES["groups"] for r in g["rules"]]
    assert len(rules) >= 8
    for rule in rules:
        # Drop label selectors, ranges and numbers (1e-9 is not a metric).
        expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b\d+(\.\d+)?(e-?\d+)?\b", "", rule["expr"])
        words = set(re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", expr)) - PROMQL_WORDS
        assert words <= names, f"{rule['alert']}: unknown metrics {sorted(words - names)}"
        assert rule["labels"]["severity"] in {"critical", "high", "medium", "low", "info"}


def test_scrape_targets_are_compose_services_on_their_ports() -> None:
    services = COMPOSE["services"]
    for job in PROM["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert host in services, f"{job['job_name']}: no compose service {host!r}"
            assert f"{port}:{port}" in services[host].get("ports", []) or port in " ".join(
                services[host]["command"]
            ), f"{job['job_name']}: {host} does not serve port {port}"


def test_compose_mounts_the_config_and_rules_prometheus_reads() -> None:
    prom = COMPOSE["services"]["prometheus"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prom["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    assert PROM["rule_files"][0] in mounts
    assert (ROOT / mounts[PROM["rule_files"][0]]).exists()
