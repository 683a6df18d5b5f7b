"""Run `continuum model-server` (the real dispatch model) as a subprocess on a free port."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from continuum.localkafka import free_port
from tests.integration.child import Child


class ModelServerProc(Child):
    what = "model server"

    def __init__(
        self,
        model_dir: Path,
        port: int | None = None,
        *,
        register_on: tuple[str, str] | None = None,
    ) -> None:
        """``register_on``: (bootstrap, topic prefix) to register the version there."""
        self.model_dir = model_dir
        self.register_on = register_on
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
                *(["--register"] if register_on else []),
            ],
            {
                "CONTINUUM_BOOTSTRAP_SERVERS": register_on[0],
                "CONTINUUM_TOPIC_PREFIX": register_on[1],
            }
            if register_on
            else {},
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
        return ModelServerProc(self.model_dir, self.port, register_on=self.register_on)
