"""Run `continuum infer worker` / `gateway` as subprocesses on the test broker (real SmolLM2)."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from continuum.localkafka import free_port
from continuum.topics import topic_spec
from schemas.serde import AvroDeserializer
from tests.integration.child import Child
from tests.integration.kafka_read import read_topic


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

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        *extra: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
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
            {**_env(bootstrap, prefix), **(env or {})},
        )


class GatewayProc(HttpChild):
    what = "gateway"

    def __init__(
        self, bootstrap: str, prefix: str, *extra: str, env: dict[str, str] | None = None
    ) -> None:
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
            {**_env(bootstrap, prefix), **(env or {})},
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


class ChatProbe:
    """Chats sent to a gateway one after another on a thread, as a user keeps typing: each
    (sent, ended, HTTP status) is kept, so a test can say every call ended and a benchmark can
    say when answers came back after a failure."""

    def __init__(
        self,
        gateway: GatewayProc,
        *,
        pause_s: float = 0.5,
        timeout_s: float = 90,
        model: str = "any",
    ) -> None:
        """``model``: a name outside any running experiment, so the probe's turns are not
        counted in an A/B test the test also checks."""
        self.gateway = gateway
        self.model = model
        self.pause_s = pause_s
        self.timeout_s = timeout_s
        self.calls: list[tuple[float, float, int]] = []
        self.stuck: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Hola"}],
            "max_tokens": 4,
        }
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                status, _ = self.gateway.chat(body, timeout=self.timeout_s)
            except (OSError, json.JSONDecodeError) as exc:  # no answer within the timeout
                self.stuck.append(f"{type(exc).__name__}: {exc}")
                status = 0
            self.calls.append((sent, time.monotonic(), status))
            self._stop.wait(self.pause_s)

    def __enter__(self) -> ChatProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout_s + 10)

    def answered_after(self, t: float) -> float | None:
        """When the first chat sent at or after ``t`` was answered (200), if one was."""
        done = [end for sent, end, status in list(self.calls) if sent >= t and status == 200]
        return min(done) if done else None


def responses(
    bootstrap: str, prefix: str, topic_name: str = "inference.responses"
) -> list[dict[str, Any]]:
    """A lane's record of its answers (``inference.responses``, or the background lane's) as a
    ``read_committed`` reader sees it (answers whose transaction committed)."""
    d = AvroDeserializer()
    topic = topic_spec(topic_name).full_name(prefix)
    return [d.decode(v).record for v, _ in read_topic(bootstrap, topic)]


class JudgeProc(HttpChild):
    """``continuum judge`` (the LLM-as-judge service) on the test broker."""

    what = "judge"

    def __init__(
        self, bootstrap: str, prefix: str, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        super().__init__(
            [
                sys.executable,
                "-m",
                "continuum.cli",
                "judge",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *extra,
            ],
            {**_env(bootstrap, prefix), **(env or {})},
        )
