"""Stage 2's Faust agent with ``agent.test_context()`` and the memory store: no broker. Table
changelogs and the partials topic are captured instead of produced. Stage 1 (a confluent-kafka
loop) is tested with fake clients in test_stage1.py."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from schemas import AvroSerializer
from streams.app import create_app
from streams.logic.alerts import AlertBook
from streams.settings import StreamsSettings


@pytest.fixture()
def app_and_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = StreamsSettings(
        bootstrap_servers="127.0.0.1:1",
        home=tmp_path,
        batch_size=1,
        hop_s=10,
        window_s=20,
        topic_prefix="unit-",
    )
    app, pipe = create_app(settings)
    sent: list[tuple[Any, Any]] = []
    changelog: list[tuple[int, str]] = []

    async def fake_send(key: Any = None, value: Any = None, **kw: Any) -> None:
        sent.append((key, value))

    monkeypatch.setattr(pipe.partials_topic, "send", fake_send)
    for table in (
        pipe.group_slots,
        pipe.group_state,
        pipe.ab_results,
    ):
        monkeypatch.setattr(
            table,
            "send_changelog",
            mock.Mock(side_effect=lambda p, k, v, *a, **kw: changelog.append((p, k))),
        )
    dead: list[tuple] = []
    monkeypatch.setattr(pipe, "_dead_letter", lambda *a: dead.append(a))
    pipe.decoder.dlq._sink = lambda *a: dead.append(a)
    return app, pipe, sent, changelog, dead


def _capture_outputs(pipe: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    outputs: list[tuple[str, dict]] = []

    async def capture(schema: str, event: dict, topic: str | None = None) -> dict:
        """Records a request to the alert owner as ("alert-requests", request)."""
        outputs.append((topic or schema, event))
        return event

    monkeypatch.setattr(pipe.outputs, "send", capture)
    return outputs


def _fold_and_roll_up(app: Any, items: list[tuple[str, dict, int, int]]) -> None:
    """Fold (source, event, partition, offset) items into stage-1 partials, 500 at a time, and
    feed every batch's partials to the rollup agent."""
    from streams.logic.partials import Stage1Folder

    folder, stage1, batches = Stage1Folder(10_000), {}, []
    for i in range(0, len(items), 500):
        batches.append(folder.fold(items[i : i + 500], stage1.get))
        stage1.update(batches[-1])

    async def run() -> None:
        async with app.agents["rollup"].test_context() as ctx:
            for parts in batches:
                for part in parts.values():
                    await ctx.put(part, key=part["g"])

    asyncio.run(run())


def _run_rollup(app: Any, pipe: Any, monkeypatch: pytest.MonkeyPatch, cfg: Any) -> list:
    """Fold the simulator's turns into stage-1 partials and feed them to the rollup agent;
    returns what it sent (record type, event)."""
    from continuum.demo.chat import TrafficSimulator

    outputs = _capture_outputs(pipe, monkeypatch)
    items = []
    offsets = [0] * 6  # spread over chat.turns' 6 partitions by session, as the producer keys
    for _, ev in TrafficSimulator(cfg).events():
        p = zlib.crc32(ev["session_id"].encode()) % 6
        items.append(("turn", ev, p, offsets[p]))
        offsets[p] += 1
    _fold_and_roll_up(app, items)
    return outputs


def test_rollup_agent_freezes_baseline_and_signals_injected_drift(
    app_and_pipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from continuum.demo.chat import DriftInjection, SimulatorConfig

    app, pipe, sent, changelog, dead = app_and_pipe
    cfg = SimulatorConfig(
        turns=9000,
        rate=100,
        seed=3,
        feedback_probability=0,
        drift=DriftInjection(at_s=60, kinds=("latency",)),
    )
    outputs = _run_rollup(app, pipe, monkeypatch, cfg)
    baselines = [e for s, e in outputs if s == "Baseline"]
    assert {b["model_version"] for b in baselines} == {"okla-v1.0", "okla-v2.0"}
    signals = [e for s, e in outputs if s == "DriftSignal"]
    drift_ms = cfg.start_ms + 60_000
    assert not [e for e in signals if e["breached"] and e["window_end"] <= drift_ms]
    late = {e["signal"] for e in signals if e["breached"] and e["window_start"] >= drift_ms}
    assert "latency_increase" in late
    requests = [e for s, e in outputs if s == "alert-requests"]
    alerts = AlertBook().apply(requests)  # what the alert owner makes of them
    assert any(a["alert_type"] == "DRIFT_DETECTED" and a["status"] == "OPEN" for a in alerts)
    for schema, event in outputs:
        # every output is a valid event (a request is an Alert-shaped record)
        AvroSerializer().encode("Alert" if schema == "alert-requests" else schema, event)


def test_retrain_criteria_use_the_registry_and_published_evaluations(
    app_and_pipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """okla-v1.0 was trained 40 days before the traffic (registry): MODEL_AGE. okla-v2.0's
    published evaluation has intent accuracy 0.5: LOW_ACCURACY from the evaluation, not the
    online estimate (which is ~1.0 without wrong_intent feedback)."""
    from continuum.demo.chat import SimulatorConfig

    app, pipe, *_ = app_and_pipe
    cfg = SimulatorConfig(turns=3000, rate=100, seed=4, feedback_probability=0)
    pipe.live.registry["okla-v1.0"] = {"trained_at": cfg.start_ms - 40 * 86_400_000}
    pipe.live.evaluations["okla-v2.0"] = {"intent_accuracy": 0.5, "event_time": cfg.start_ms}
    outputs = _run_rollup(app, pipe, monkeypatch, cfg)
    triggers = {(e["model_version"], e["reason"]): e for s, e in outputs if s == "RetrainTrigger"}
    age = triggers[("okla-v1.0", "MODEL_AGE")]
    assert 40 <= age["value"] < 41 and age["threshold"] == 30
    low = triggers[("okla-v2.0", "LOW_ACCURACY")]
    assert low["value"] == 0.5 and low["details"] == {"source": "evaluation"}
    assert ("okla-v2.0", "MODEL_AGE") not in triggers  # no registry entry: age from first turn
    assert ("okla-v1.0", "LOW_ACCURACY") not in triggers


def test_a_predictive_model_gets_baseline_drift_outcome_accuracy_and_retrain_trigger(
    app_and_pipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prediction and Outcome partials (group ``p:``) through the same agent: a baseline frozen
    from the clean predictions, the injected confidence drop and null features signalled only
    after the drift, performance degradation measured on the outcomes' accuracy per window
    (65 % falling to 30 %), and LOW_ACCURACY once the success rate is known from 200 of them."""
    from continuum.demo.dispatch import PredictionSimConfig, PredictionSimulator

    app, pipe, *_ = app_and_pipe
    outputs = _capture_outputs(pipe, monkeypatch)
    cfg = PredictionSimConfig(
        predictions=9000,
        rate=100,
        accuracy=0.65,
        outcome_delay_ms=500,
        drift_at_s=60,
        drift=("confidence", "nulls", "accuracy"),
    )
    items = []
    offsets = {"prediction": [0] * 3, "outcome": [0] * 3}
    for schema, ev in PredictionSimulator(cfg).events():
        source = schema.lower()
        p = zlib.crc32(ev["prediction_id"].encode()) % 3
        items.append((source, ev, p, offsets[source][p]))
        offsets[source][p] += 1
    _fold_and_roll_up(app, items)
    baselines = [e for s, e in outputs if s == "Baseline"]
    assert [b["model_version"] for b in baselines] == ["xgb-v2"]
    assert baselines[0]["tokens_mean"] is None and len(baselines[0]["intent_distribution"]) == 20
    signals = [e for s, e in outputs if s == "DriftSignal" and e["detector"] == "window"]
    drift_ms = cfg.start_ms + 60_000
    assert {e["model_version"] for e in signals} == {"xgb-v2"}
    assert not [e["signal"] for e in signals if e["breached"] and e["window_end"] <= drift_ms]
    late = {e["signal"] for e in signals if e["breached"] and e["window_start"] >= drift_ms}
    assert {"confidence_drop", "data_quality_null_rate"} <= late
    assert "latency_increase" not in late and "token_usage_change" not in {
        e["signal"] for e in signals
    }
    nulls = [e for e in signals if e["signal"] == "data_quality_null_rate" and e["breached"]]
    assert nulls[-1]["details"]["features.rain"]  # names the feature that went missing
    perf = [e for e in signals if e["signal"] == "performance_degradation"]
    assert {e["details"]["measure"] for e in perf} == {"accuracy"}
    assert [e["window_end"] for e in perf if e["breached"]]
    assert all(e["window_end"] > drift_ms for e in perf if e["breached"])
    triggers = [e for s, e in outputs if s == "RetrainTrigger"]
    assert [(t["model_version"], t["reason"]) for t in triggers] == [("xgb-v2", "LOW_ACCURACY")]
    assert 0.55 < triggers[0]["value"] < 0.7
    state = pipe.group_state.get("p:xgb-v2")
    assert state["outcomes"]["outcomes"] == sum(offsets["outcome"]) > 7000
    assert 0.4 < state["outcomes"]["accuracy"] < 0.6  # 2/3 of the outcomes at 65 %, 1/3 at 30 %
    assert state["last_window"]["accuracy"] < 0.4
    # The dispatch seed's absolute rules: nothing before the drift; after it, mean confidence
    # under 0.75 (LOW_CONFIDENCE) and fallbacks to the rules over 10 % (CRITICAL).
    requests = [e for s, e in outputs if s == "alert-requests"]
    rules = [r for r in requests if r["dedup_key"].startswith("rule:") and r["status"] == "OPEN"]
    assert rules and all(r["event_time"] > drift_ms for r in rules)
    alerts = AlertBook().apply(requests)
    opened = {(a["alert_type"], a["severity"]) for a in alerts if a["status"] == "OPEN"}
    assert {("LOW_CONFIDENCE", "HIGH"), ("HIGH_FALLBACK_RATE", "CRITICAL")} <= opened
    for schema, event in outputs:
        AvroSerializer().encode("Alert" if schema == "alert-requests" else schema, event)


def test_stage_2_reads_a_groups_partials_through_its_index_and_follows_a_restore(
    app_and_pipe: Any,
) -> None:
    """The index is kept by stage 2's own writes and rebuilt when the table changed under it
    (a rebalance restored partitions from the changelog, or dropped them)."""
    from streams.stage2 import Rollup

    app, pipe, sent, changelog, dead = app_and_pipe
    rollup = Rollup(pipe)

    def part(g: str, b: int) -> dict[str, Any]:
        return {"g": g, "k": "turns", "s": f"{g[2:]}|*", "b": b, "p": 0, "wm": b, "v": {}}

    rollup.keep(part("m:a", 1), 0)
    rollup.keep(part("m:b", 1), 0)
    assert [p["g"] for p in rollup.partials("m:a")] == ["m:a"]
    # Restored from the changelog behind stage 2's back: seen on the next read.
    pipe.group_slots.data["turns|a|*|2|0"] = part("m:a", 2)
    assert sorted(p["b"] for p in rollup.partials("m:a")) == [1, 2]
    # Same size, other keys (one partition dropped, another restored): the rebalance marks it.
    del pipe.group_slots.data["turns|b|*|1|0"]
    pipe.group_slots.data["turns|c|*|1|0"] = part("m:c", 1)
    rollup.stale = True
    assert rollup.groups() == ["m:a", "m:c"]
    rollup.forget(["turns|a|*|2|0"], 0)
    assert [p["b"] for p in rollup.partials("m:a")] == [1]
    assert changelog[-1] == (0, "turns|a|*|2|0")
