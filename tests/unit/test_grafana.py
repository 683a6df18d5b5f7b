"""deploy/grafana: the dashboard has the seed's four sections plus drift, A/B and alerts; every
query reads a metric the services export; provisioning and compose agree on paths and the
datasource uid. (The queries are also run against a real Prometheus in
tests/integration/test_prometheus.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.promql import exported, metric_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy/grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards/continuum.json").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
# Series Prometheus itself adds (scrape health) or every client library exports by default.
PROCESS = {
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
}


def queries() -> list[tuple[str, str]]:
    return [
        (p["title"], t["expr"])
        for p in DASHBOARD["panels"]
        if p["type"] != "row"
        for t in p["targets"]
    ]


def test_sections_of_the_seed_and_continuum() -> None:
    rows = [p["title"] for p in DASHBOARD["panels"] if p["type"] == "row"]
    assert rows[:4] == [
        "Estado general",
        "Latencia e inferencia",
        "Intents y calidad",
        "Recursos del sistema",
    ]
    assert {"Drift", "A/B", "Alertas"} <= set(rows)
    titles = {p["title"] for p in DASHBOARD["panels"]}
    assert {
        "Distribución de intents",
        "Latencia p50 / p90 / p95 / p99",
        "Memoria RSS / VMS",
    } <= titles


def test_every_query_uses_exported_metrics() -> None:
    names = exported() | PROCESS
    assert PROCESS <= exported(), "the services no longer export process metrics"
    qs = queries()
    assert len(qs) >= 30
    for title, expr in qs:
        used = metric_names(expr)
        assert used, f"{title}: no metric in {expr!r}"
        assert used <= names, f"{title}: unknown metrics {sorted(used - names)}"


def test_panels_use_the_provisioned_datasource_and_do_not_overlap() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    taken: set[tuple[int, int]] = set()
    ids = set()
    for p in DASHBOARD["panels"]:
        assert p["id"] not in ids
        ids.add(p["id"])
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"panel {p['title']!r} overlaps another"
        taken |= cells
        if p["type"] != "row":
            assert p["datasource"]["uid"] == uid
            assert all(t["datasource"]["uid"] == uid for t in p["targets"])


def test_compose_mounts_the_provisioning_and_the_dashboard_folder() -> None:
    graf = COMPOSE["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in graf["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/continuum.yml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert (ROOT / mounts[folder] / "continuum.json").exists()
    home = graf["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(folder) and (ROOT / mounts[folder] / Path(home).name).exists()
    assert "prometheus" in COMPOSE["services"] and "prometheus" in graf["depends_on"]
