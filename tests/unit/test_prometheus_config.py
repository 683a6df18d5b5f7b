"""deploy/prometheus: every metric a rule uses is one the code exports; every scrape target is a
compose service on the port its command serves."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.promql import exported, metric_names

ROOT = Path(__file__).resolve().parents[2]
PROM = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
RULES = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_rule_uses_exported_metrics() -> None:
    names = exported()
    rules = [r for g in RULES["groups"] for r in g["rules"]]
    assert len(rules) >= 8
    for rule in rules:
        words = metric_names(rule["expr"])
        assert words <= names, f"{rule['alert']}: unknown metrics {sorted(words - names)}"
        assert rule["labels"]["severity"] in {"critical", "high", "medium", "low", "info"}


def test_scrape_targets_are_compose_services_on_their_ports() -> None:
    services = COMPOSE["services"]
    for job in PROM["scrape_configs"]:
        targets = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        targets += [
            f"{n}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for n in sd["names"]
        ]
        assert targets, f"{job['job_name']}: no targets"
        for target in targets:
            host, port = target.split(":")
            assert host in services, f"{job['job_name']}: no compose service {host!r}"
            ports = [str(p).rsplit(":", 1)[-1] for p in services[host].get("ports", [])]
            assert port in ports or port in " ".join(services[host]["command"]), (
                f"{job['job_name']}: {host} does not serve port {port}"
            )


def test_compose_mounts_the_config_and_rules_prometheus_reads() -> None:
    prom = COMPOSE["services"]["prometheus"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prom["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    assert PROM["rule_files"][0] in mounts
    assert (ROOT / mounts[PROM["rule_files"][0]]).exists()
