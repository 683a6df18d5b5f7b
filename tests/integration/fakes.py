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


class FakeRegistry:
    """The two Schema Registry calls Continuum makes (register a subject's schema, fetch a
    schema by id) over HTTP, behind basic auth, as a managed registry would answer them."""

    def __init__(self, user: str, password: str) -> None:
        import base64

        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.schemas: dict[int, str] = {}
        self.ids: dict[str, int] = {}
        self.refused = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == fake.expected:
                    return True
                fake.refused += 1
                self._reply(401, {"error_code": 401, "message": "Unauthorized"})
                return False

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self._authorized():
                    return
                subject = self.path.split("/")[2]
                schema = body["schema"]
                sid = fake.ids.setdefault(schema, len(fake.ids) + 1)
                fake.schemas[sid] = schema
                self._reply(200, {"id": sid, "subject": subject, "version": 1, "schema": schema})

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                sid = int(self.path.split("?")[0].rstrip("/").split("/")[-1])
                if sid not in fake.schemas:
                    self._reply(404, {"error_code": 40403, "message": "Schema not found"})
                    return
                self._reply(200, {"schema": fake.schemas[sid], "schemaType": "AVRO"})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
