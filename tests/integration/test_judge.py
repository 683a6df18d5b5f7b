"""Online LLM-as-judge on the real broker with the real CPU model: sampled turns are judged on
the background lane by the same inference worker, scored exactly once per turn (ids from the
turn), folded by the streams into the A/B arms, and paired with users' feedback."""

from __future__ import annotations

from collections import Counter

import pytest

from continuum.demo.chat import SimulatorConfig, TrafficSimulator
from jobs.rubric import sampled
from schemas.ids import stable_id
from tests.integration.conftest import wait_for
from tests.integration.inference_procs import InferenceWorkerProc, JudgeProc, metric
from tests.integration.kafka_read import read_all
from tests.integration.traffic import produce

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.integration

RATE = 0.08


def test_sampled_turns_are_scored_once_and_show_per_arm(broker, prefix, stack, worker_factory):
    streams = worker_factory()
    stack(InferenceWorkerProc)
    judge = stack(
        JudgeProc,
        "--judge-sample-rate",
        str(RATE),
        "--judge-tokens-per-minute",
        "0",
        "--judge-max-tokens",
        "80",
    )
    cfg = SimulatorConfig(turns=400, rate=50, seed=41, feedback_probability=0.5)
    produce(broker, prefix, cfg)
    turns = [ev for kind, ev in TrafficSimulator(cfg).events() if kind == "ChatTurn"]
    expected = {t["event_id"] for t in turns if sampled(t["event_id"], RATE)}
    assert 15 <= len(expected) <= 60

    def scores() -> list[dict]:
        return [e.event for e in read_all(broker, prefix, ["judge.scores"])]

    wait_for(
        lambda: {s["turn_id"] for s in scores()} >= expected,
        400,
        what=lambda: f"{len(expected)} judged turns, got {len(scores())}:\n{judge.tail()}",
    )
    got = scores()
    # One score per sampled turn, none for the others, each with the id derived from its turn.
    assert Counter(s["turn_id"] for s in got) == Counter(expected)
    assert all(s["event_id"] == stable_id("judge", s["turn_id"]) for s in got)
    by_status = Counter(s["status"] for s in got)
    # Constrained decoding makes even the 135M model answer the rubric's JSON.
    assert by_status["ok"] >= 0.8 * len(got), by_status
    ok = [s for s in got if s["status"] == "ok"]
    assert all(0.0 <= s["score"] <= 1.0 and len(s["scores"]) == 5 for s in ok)
    assert all(s["sample_rate"] == RATE and s["rubric_version"] == "rubric-v1" for s in got)
    # Judge scores per arm in the A/B view, as a fifth metric.
    per_arm = Counter(s["variant"] for s in ok)

    def ab_judged() -> dict:
        status, body = streams.get("/ab/v1-vs-v2/")
        if status != 200:
            return {}
        return {arm: body[arm].get("judged") for arm in ("control", "treatment")}

    wait_for(
        lambda: ab_judged() == {"control": per_arm["control"], "treatment": per_arm["treatment"]},
        60,
        what=lambda: f"judged per arm {dict(per_arm)} in /ab/v1-vs-v2/, got {ab_judged()}",
    )
    _, body = streams.get("/ab/v1-vs-v2/")
    assert any(t["metric"] == "judge_score" for t in body["tests"])
    # The judge's work stayed off the user lane: no ChatTurn was made for a judge request.
    chat = [e.event for e in read_all(broker, prefix, ["chat.turns"])]
    assert len(chat) == len(turns)
    _, text = judge.get("/metrics")
    assert metric(text, 'continuum_judge_scores_total{status="ok"}') == by_status["ok"]
    status, cal = judge.get("/calibration")
    assert status == 200 and cal["pairs"] >= 1  # feedback on judged turns was paired
    print(f"judged {len(got)} of {len(turns)} turns: {dict(by_status)}; calibration {cal}")
