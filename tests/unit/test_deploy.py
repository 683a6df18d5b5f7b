"""Static checks of docker-compose.yml against the code (no Docker engine runs here)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from continuum.cli import build_parser
from streams.settings import StreamsSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
KNOWN_ENV = {StreamsSettings.env_name(f.name) for f in fields(StreamsSettings)}
PROJECT_SERVICES = {
    name: svc for name, svc in COMPOSE["services"].items() if svc.get("build") == "."
}


def test_project_services_exist_and_build_from_the_dockerfile() -> None:
    assert {"topics", "simulator", "streams"} <= set(PROJECT_SERVICES)
    assert (ROOT / "Dockerfile").exists()


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
