"""Headless Chromium driven over the W3C WebDriver protocol (Debian's chromium + chromium-driver),
with a few plain HTTP calls: no Selenium, nothing downloaded at test time."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx

from continuum.localkafka import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


class Browser:
    def __init__(self, width: int = 1400, height: int = 2400) -> None:
        if not shutil.which(CHROMEDRIVER):
            raise RuntimeError(
                "chromedriver not found: install Debian's chromium and chromium-driver "
                "(make system-deps)"
            )
        port = free_port()
        self.proc = subprocess.Popen(
            [CHROMEDRIVER, f"--port={port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.http.get("/status").json()["value"]["ready"]:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("chromedriver did not become ready in 30 s")
            time.sleep(0.1)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            f"--window-size={width},{height}",
                            "--force-device-scale-factor=1",
                        ],
                    },
                }
            }
        }
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, path, json=body)
        value = r.json()["value"]
        if r.status_code != 200:
            raise RuntimeError(f"WebDriver {method} {path}: {value}")
        return value

    def open(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def js(self, script: str, *args: Any) -> Any:
        return self._call(
            "POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)}
        )

    def wait(self, check: Callable[[], Any], timeout: float, what: str, show: str = "null") -> Any:
        """Poll ``check`` until truthy; on timeout the message carries ``show`` (a JS expression)
        evaluated in the page, e.g. what it has drawn so far."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                seen = self.js(f"return {show}")
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; {seen}")
            time.sleep(0.5)

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))

    def close(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.http.close()
            self.proc.terminate()
            self.proc.wait(10)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
