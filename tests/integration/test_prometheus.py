"""A real Prometheus (Debian's package) on loopback scrapes a streams worker and an inference
worker, loads deploy/prometheus/rules.yml, and answers for their metrics through its HTTP API;
every Grafana dashboard query is run through it too (a query that does not parse fails here)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from continuum.demo.chat import SimulatorConfig, run
from continuum.localkafka import free_port
from producers.producer import EventProducer
from tests.integration.conftest import Broker, wait_for
from tests.integration.inference_procs import InferenceWorkerProc
from tests.integration.streams_worker import StreamsWorker

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def test_promtool_accepts_the_config_and_rules() -> None:
    out = subprocess.run(
        [PROMTOOL, "check", "rules", str(ROOT / "deploy/prometheus/rules.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_real_prometheus_scrapes_both_services_and_loads_the_rules(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    streams = StreamsWorker(broker.bootstrap, prefix, tmp_path / "home")
    infer = InferenceWorkerProc(broker.bootstrap, prefix, "--heartbeat-s", "1")
    prom_port = free_port()
    # The deployment's scrape config with loopback targets and a 1 s interval; the same rules file.
    deployed = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"] for j in deployed["scrape_configs"]}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy/prometheus/rules.yml")],
        "scrape_configs": [
            {
                "job_name": "continuum-streams",
                "static_configs": [{"targets": [f"127.0.0.1:{streams.port}"]}],
            },
            {
                "job_name": "llm-server",
                "static_configs": [{"targets": [f"127.0.0.1:{infer.port}"]}],
            },
        ],
    }
    assert {c["job_name"] for c in config["scrape_configs"]} <= jobs
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "w"),  # noqa: SIM115 - the child's
    )
    api = httpx.Client(base_url=f"http://127.0.0.1:{prom_port}/api/v1", timeout=10)

    def query(q: str) -> list[dict]:
        r = api.get("/query", params={"query": q})
        body = r.json()
        assert body["status"] == "success", f"{q}: {body}"
        return body["data"]["result"]

    def ready() -> bool:
        try:
            return api.get("/status/buildinfo").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(streams.ready, 90, what=lambda: "streams worker:\n" + streams.tail())
        wait_for(infer.up, 120, what=lambda: "inference worker:\n" + infer.tail())
        wait_for(ready, 30, what=lambda: (tmp_path / "prometheus.log").read_text())
        with EventProducer(broker.bootstrap, topic_prefix=prefix) as p:
            run(p.send, SimulatorConfig(turns=600, rate=100, seed=4))

        wait_for(
            lambda: (
                {r["metric"]["job"]: r["value"][1] for r in query("up")}
                == {"continuum-streams": "1", "llm-server": "1"}
            ),
            60,
            what=lambda: json.dumps(query("up")),
        )
        # Values that come back through Prometheus equal what the services did.
        wait_for(
            lambda: (
                (r := query('continuum_events_processed_total{type="ChatTurn"}'))
                and float(r[0]["value"][1]) == 600
            ),
            90,
            what=lambda: json.dumps(query("continuum_events_processed_total")),
        )
        loaded = query("okla_llm_model_loaded")
        assert [float(r["value"][1]) for r in loaded] == [1.0]
        assert loaded[0]["metric"]["job"] == "llm-server"
        intents = query("sum(continuum_turns_total)")
        assert float(intents[0]["value"][1]) == 600
        assert query("process_resident_memory_bytes{job='llm-server'}")

        # The alerting rules loaded and evaluate without errors.
        def rules_evaluated() -> list[dict]:
            groups = api.get("/rules").json()["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            evaluated = all(r.get("lastEvaluation", "0001").startswith("20") for r in rules)
            return rules if rules and evaluated else []

        wait_for(lambda: bool(rules_evaluated()), 30, what=lambda: api.get("/rules").text)
        rules = rules_evaluated()
        deployed_rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
        assert len(rules) == sum(len(g["rules"]) for g in deployed_rules["groups"])
        assert [r["name"] for r in rules if r["health"] != "ok"] == []

        # Every Grafana query parses and runs (Grafana's $__range as 5m).
        dash = json.loads((ROOT / "deploy/grafana/dashboards/continuum.json").read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                query(target["expr"].replace("$__range", "5m"))
    finally:
        prom.terminate()
        prom.wait(20)
        api.close()
        infer.stop()
        streams.stop()
