"""Run `continuum infer worker` / `gateway` as subprocesses on the test broker (real SmolLM2)."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

from continuum.localkafka import free_port
from tests.integration.child import Child


def _env(bootstrap: str, prefix: str) -> dict[str, str]:
    return {"CONTINUUM_BOOTSTRAP_SERVERS": bootstrap, "CONTINUUM_TOPIC_PREFIX": prefix}


class HttpChild(Child):
    port: int
    what = "process"

    def get(self, path: str) -> tuple[int, Any]:
        self.check_alive(self.what)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                raw = r.read().decode()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read().decode(), e.code
        try:
            return status, json.loads(raw)
        except json.JSONDecodeError:
            return status, raw

    def up(self) -> bool:
        self.check_alive(self.what)
        try:
            return self.get("/health")[0] == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False


class InferenceWorkerProc(HttpChild):
    what = "inference worker"

    def __init__(self, bootstrap: str, prefix: str, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(
            [
                sys.executable,
                "-m",
                "continuum.cli",
                "infer",
                "worker",
                "--worker-host",
                "127.0.0.1",
                "--worker-port",
                str(self.port),
                *extra,
            ],
            _env(bootstrap, prefix),
        )


class GatewayProc(HttpChild):
    what = "gateway"

    def __init__(self, bootstrap: str, prefix: str, *extra: str) -> None:
        self.port = free_port()
        super().__init__(
            [
                sys.executable,
                "-m",
                "continuum.cli",
                "infer",
                "gateway",
                "--gateway-host",
                "127.0.0.1",
                "--gateway-port",
                str(self.port),
                *extra,
            ],
            _env(bootstrap, prefix),
        )

    def chat(
        self, body: dict[str, Any], headers: dict[str, str] | None = None, timeout: float = 120
    ):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def metric(text: str, name: str) -> float:
    """Value of one sample line (``name`` includes labels) in Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")
