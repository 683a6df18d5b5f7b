"""The dispatch model: features, the rules, training metrics, and the seed's endpoints (served by
the real aiohttp app in-process)."""

from __future__ import annotations

import asyncio
import copy
import math
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from inference.dispatch.features import (
    FEATURES,
    DispatchRequestError,
    candidates,
    haversine_km,
    local_time,
)
from inference.dispatch.model import DispatchModel, load_or_train, train
from inference.dispatch.rules import nearest_driver, rules_answer
from inference.dispatch.server import PREFIX, make_app
from inference.dispatch.world import dispatches, success_probability


@pytest.fixture(scope="module")
def model() -> DispatchModel:
    return train("gbm-test", seed=3, n_dispatches=400)


def test_haversine_against_known_distances() -> None:
    # One degree of longitude on the equator with the mean radius 6371.0088 km.
    assert haversine_km(0, 0, 0, 1) == pytest.approx(2 * math.pi * 6371.0088 / 360, rel=1e-9)
    # Santo Domingo to Santiago de los Caballeros, about 123 km as the crow flies.
    assert haversine_km(18.4861, -69.9312, 19.4517, -70.6970) == pytest.approx(134.4, abs=1.0)
    assert haversine_km(18.5, -69.9, 18.5, -69.9) == 0


def test_every_pair_has_the_18_features() -> None:
    req = dispatches(1, 1)[0]
    pairs = candidates(req)
    assert len(FEATURES) == 18
    assert pairs and all(tuple(f) == FEATURES for _, f in pairs)
    assert len(pairs) == sum(d["available"] for d in req["drivers"])
    assert all(f["zone_supply"] == len(pairs) for _, f in pairs)


def test_local_time_is_santo_domingo() -> None:
    assert local_time(1_767_225_600_000) == (20, 2)  # 2026-01-01 00:00Z = Wed 31 Dec 20:00


def test_rules_pick_the_nearest_available_driver() -> None:
    req = dispatches(2, 1)[0]
    for d in req["drivers"]:
        d["available"] = True
    far, near = req["drivers"][0], req["drivers"][1]
    near["lat"], near["lon"] = req["pickup_lat"], req["pickup_lon"]
    assert nearest_driver(req)[0] == near["driver_id"]
    near["available"] = False
    chosen, feats = nearest_driver(req)
    assert chosen != near["driver_id"] and feats is not None
    assert feats["distance_km"] == min(f["distance_km"] for _, f in candidates(req))
    for d in req["drivers"]:
        d["available"] = False
    assert nearest_driver(req) == (None, None)
    assert far["driver_id"]  # used
    assert rules_answer(req).prediction is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("pickup_lat"), "pickup_lat is None, expected a number"),
        (lambda r: r.update(zone="marte"), "zone is 'marte', expected one of"),
        (lambda r: r.update(drivers=[]), "drivers must be a non-empty list"),
        (lambda r: r["drivers"][0].update(acceptance_rate=2), "drivers[0].acceptance_rate is 2"),
        (lambda r: r.update(rain="yes"), "rain is 'yes', expected true or false"),
    ],
)
def test_a_bad_request_names_the_field(change: Any, message: str) -> None:
    req = copy.deepcopy(dispatches(4, 1)[0])
    change(req)
    with pytest.raises(DispatchRequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        candidates(req)


def test_training_metrics_describe_the_chosen_pairs(model: DispatchModel) -> None:
    tm = model.info["training_metrics"]
    assert 0.6 < tm["accuracy"] < 1 and 0.5 < tm["auc"] < 1
    assert 0 < tm["confidence_mean"] <= 1
    dist = tm["feature_distributions"]
    assert set(dist) == set(FEATURES) - {"hour", "day_of_week", "is_peak", "eta_min"}
    assert tm["unmonitored_features"] == ["hour", "day_of_week", "is_peak", "eta_min"]
    for name, d in dist.items():
        total = sum(d["shares"].values()) if d["type"] == "categorical" else sum(d["shares"])
        assert total == pytest.approx(1, abs=1e-3), name
        if d["type"] == "numeric":
            assert len(d["shares"]) == len(d["edges"]) + 1
    assert [d["feature"] for d in model.info["feature_importance"]] != []
    assert {d["feature"] for d in model.info["feature_importance"]} == set(FEATURES)


def test_the_model_beats_the_rules_on_the_ground_truth() -> None:
    """The point of Fase 2: its chosen drivers complete more dispatches than the nearest one."""
    m = train("gbm-test", seed=5, n_dispatches=2000)
    tm = m.info["training_metrics"]
    assert tm["expected_success_model"] > tm["expected_success_rules"] + 0.02


def test_a_kept_model_is_loaded_not_retrained(tmp_path: Path, monkeypatch) -> None:
    import inference.dispatch.model as mod

    trained: list[str] = []
    real = mod.train

    def counting(version: str, **kw: Any) -> DispatchModel:
        trained.append(version)
        return real(version, seed=1, n_dispatches=200)

    monkeypatch.setattr(mod, "train", counting)
    a = load_or_train(tmp_path, "v-a")
    b = load_or_train(tmp_path, "v-a")
    req = dispatches(9, 1)[0]
    assert a.predict(req) == b.predict(req) and trained == ["v-a"]
    load_or_train(tmp_path, "v-b")
    assert trained == ["v-a", "v-b"]


def _serve(model: DispatchModel, calls: Any) -> Any:
    async def run() -> Any:
        async with TestClient(TestServer(make_app(model))) as c:
            return await calls(c)

    return asyncio.run(run())


def test_the_seed_endpoints_answer(model: DispatchModel) -> None:
    reqs = dispatches(6, 3)
    bad = copy.deepcopy(reqs[1])
    bad["zone"] = "marte"

    async def calls(c: TestClient) -> dict[str, Any]:
        out = {}
        r = await c.post(f"{PREFIX}/predict", json={"features": reqs[0]})
        out["predict"] = (r.status, await r.json())
        r = await c.post(f"{PREFIX}/predict", json=bad)
        out["bad"] = (r.status, await r.json())
        r = await c.post(f"{PREFIX}/predict/batch", json={"instances": [reqs[0], bad, reqs[2]]})
        out["batch"] = (r.status, await r.json())
        r = await c.post(f"{PREFIX}/predict/batch", json={"rows": []})
        out["batch_bad"] = (r.status, await r.json())
        r = await c.post(f"{PREFIX}/predict", data=b"{not json")
        out["not_json"] = (r.status, await r.json())
        for path in ("health", "model/info", "model/feature-importance"):
            r = await c.get(f"{PREFIX}/{path}")
            out[path] = (r.status, await r.json())
        r = await c.get("/metrics")
        out["metrics"] = (r.status, await r.text())
        return out

    out = _serve(model, calls)
    status, answer = out["predict"]
    assert status == 200 and answer["model_version"] == "gbm-test"
    assert answer["prediction"] in {d["driver_id"] for d in reqs[0]["drivers"]}
    assert tuple(answer["features"]) == FEATURES and 0 <= answer["confidence"] <= 1
    assert answer["confidence"] == pytest.approx(answer["candidates"][0]["score"])
    assert out["bad"] == (400, {"error": bad_zone()})
    status, body = out["batch"]
    assert status == 200 and body["errors"] == 1
    assert body["predictions"][1] == {"error": f"instances[1]: {bad_zone()}"}
    assert body["predictions"][0] == answer
    assert out["batch_bad"] == (400, {"error": "instances must be a list of dispatch requests"})
    assert out["not_json"][0] == 400 and "not JSON" in out["not_json"][1]["error"]
    assert out["health"][1]["status"] == "HEALTHY"
    assert out["model/info"][1]["training_metrics"]["accuracy"] > 0
    assert len(out["model/feature-importance"][1]["feature_importance"]) == 18
    assert 'continuum_model_server_predictions_total{outcome="ok"} 3.0' in out["metrics"][1]
    assert success_probability(answer["features"]) > 0


def bad_zone() -> str:
    return "zone is 'marte', expected one of norte, sur, este, oeste, centro"
