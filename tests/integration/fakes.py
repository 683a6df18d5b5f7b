"""Stand-ins shared by the integration tests: a local HTTP server playing Slack or a webhook."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "T000/B000/s3cr3t-token"


class FakeSlack:
    """Answers each POST with the next scripted (status, headers), then 200 forever; keeps the
    bodies it accepted."""

    def __init__(self, script: list[tuple[int, dict[str, str]]] | None = None) -> None:
        self.script = list(script or [])
        self.accepted: list[dict[str, Any]] = []
        self.attempts: list[float] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.attempts.append(time.monotonic())
                status, headers = fake.script.pop(0) if fake.script else (200, {})
                if status == 200:
                    fake.accepted.append(body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"error")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/{SECRET}"

    def close(self) -> None:
        self.server.shutdown()
