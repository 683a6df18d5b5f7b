"""Run `continuum streams worker` as a subprocess on the test broker and query its web views."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from continuum.localkafka import free_port
from tests.integration.child import Child


class StreamsWorker(Child):
    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        home: Path,
        *,
        app_id: str = "streams",
        window_s: int = 20,
        hop_s: int = 5,
        freeze_after: int = 500,
        port: int | None = None,
        extra: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: more environment (a secured cluster's connection settings)."""
        self.port = port or free_port()
        super().__init__(
            [
                sys.executable,
                "-m",
                "continuum.cli",
                "streams",
                "worker",
                "--app-id",
                app_id,
                "--web-port",
                str(self.port),
                "--window-s",
                str(window_s),
                "--hop-s",
                str(hop_s),
                "--freeze-after",
                str(freeze_after),
                "--batch-within-s",
                "0.2",
                *extra,
            ],
            {
                "CONTINUUM_BOOTSTRAP_SERVERS": bootstrap,
                "CONTINUUM_TOPIC_PREFIX": prefix,
                "CONTINUUM_HOME": str(home),
                "CONTINUUM_API_TOKEN": "test-token",
                **(env or {}),
            },
        )

    def get(self, path: str) -> tuple[int, Any]:
        self.check_alive("streams worker")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                body = r.read()
                return r.status, json.loads(body) if path != "/metrics" else body.decode()
        except urllib.error.HTTPError as e:
            return e.code, _body(e.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

    def post(self, path: str, body: Any, token: str | None = "test-token") -> tuple[int, Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, _body(e.read())

    def ready(self) -> bool:
        return self.get("/health/")[0] in (200, 503)


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode("utf-8", "replace")
