"""The gateway's API keys (several, from env or a file re-read on change, constant-time match,
OpenAI-shaped 401, per-key rate limit with Retry-After) and the streams views' read token."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import make_mocked_request

from inference.auth import ApiKeys, parse_keys
from inference.gateway import Gateway, GatewayMetrics
from streams.views import read_allowed


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def gateway(keys: ApiKeys) -> Gateway:
    g = Gateway.__new__(Gateway)  # no Kafka: only the HTTP checks are exercised
    g.keys = keys
    g.metrics = GatewayMetrics()
    return g


def call(g: Gateway, auth: str | None):
    headers = {"Authorization": auth} if auth is not None else {}
    resp = g._refusal(make_mocked_request("POST", "/v1/chat/completions", headers=headers))
    return (200, None, {}) if resp is None else (resp.status, json.loads(resp.text), resp.headers)


def test_keys_inline_and_named() -> None:
    keys = parse_keys("sk-one, ci:sk-two\n# comment\n")
    assert sorted(keys) == ["ci", "key-1"]
    assert all(len(d) == 32 for d in keys.values())  # digests, not the keys
    with pytest.raises(ValueError, match="twice"):
        parse_keys("a:x,a:y")


def test_missing_and_wrong_keys_get_openai_shaped_401s_and_the_right_one_passes() -> None:
    g = gateway(ApiKeys("sk-alpha,ci:sk-beta"))
    status, body, headers = call(g, None)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert "didn't provide" in body["error"]["message"] and "Bearer" in headers["WWW-Authenticate"]
    status, body, _ = call(g, "Bearer sk-wrong")
    assert status == 401 and body["error"]["message"] == "Incorrect API key provided."
    assert "sk-wrong" not in json.dumps(body)
    assert call(g, "Bearer sk-alpha")[0] == 200
    assert call(g, "bearer sk-beta")[0] == 200
    assert call(g, "Basic sk-alpha")[0] == 401
    refused = {
        s.labels["reason"]: s.value
        for m in g.metrics.refused.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert refused == {"missing_key": 1.0, "wrong_key": 2.0}


def test_no_key_configured_leaves_the_gateway_open() -> None:
    assert call(gateway(ApiKeys("")), None)[0] == 200


def test_a_rotated_key_file_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("old:sk-old\n")
    clock = Clock()
    g = gateway(ApiKeys(path=f, clock=clock))
    assert call(g, "Bearer sk-old")[0] == 200
    f.write_text("new:sk-new\n")
    os.utime(f, (clock.t, os.stat(f).st_mtime + 5))
    clock.t += 3  # re-checked at most every 2 s
    assert call(g, "Bearer sk-new")[0] == 200
    assert call(g, "Bearer sk-old")[0] == 401


def test_rate_limit_per_key_answers_429_with_retry_after() -> None:
    clock = Clock()
    g = gateway(ApiKeys("a:sk-a,b:sk-b", rate_per_min=2, clock=clock))
    assert [call(g, "Bearer sk-a")[0] for _ in range(3)] == [200, 200, 429]
    status, body, headers = call(g, "Bearer sk-a")
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert int(headers["Retry-After"]) == 30  # one token every 30 s at 2/min
    assert call(g, "Bearer sk-b")[0] == 200  # another key has its own budget
    clock.t += 30
    assert call(g, "Bearer sk-a")[0] == 200


def test_views_read_token() -> None:
    def pipe(read: str, api: str = "") -> SimpleNamespace:
        return SimpleNamespace(settings=SimpleNamespace(views_read_token=read, api_token=api))

    open_pipe, locked = pipe(""), pipe("r-tok", "api-tok")
    assert read_allowed(open_pipe, "GET", "/ab/", "")
    assert not read_allowed(locked, "GET", "/ab/", "")
    assert not read_allowed(locked, "GET", "/ab/", "Bearer nope")
    assert read_allowed(locked, "GET", "/ab/", "Bearer r-tok")
    assert read_allowed(locked, "GET", "/alerts/active/", "Bearer api-tok")
    for path in ("/health/", "/metrics", "/dashboard/"):
        assert read_allowed(locked, "GET", path, "")
