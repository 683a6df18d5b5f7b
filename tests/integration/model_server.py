"""Run `continuum model-server` (the real dispatch model) as a subprocess on a free port."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from continuum.localkafka import free_port
from tests.integration.child import Child


class ModelServerProc(Child):
    what = "model server"

    def __init__(self, model_dir: Path, port: int | None = None) -> None:
        self.model_dir = model_dir
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/api/v2/dispatch"
        super().__init__(
            [
                sys.executable,
                "-m",
                "continuum.cli",
                "model-server",
                "--port",
                str(self.port),
                "--model-dir",
                str(model_dir),
            ],
            {},
        )

    def up(self) -> bool:
        self.check_alive(self.what)
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def restart(self) -> ModelServerProc:
        """A new process on the same port and model folder (the kept model, not retrained)."""
        return ModelServerProc(self.model_dir, self.port)
