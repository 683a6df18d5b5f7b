"""The offline loop on the real broker and the real LLM: `continuum evaluate` against the gateway
+ SmolLM2, the EvaluationResult on its topic, the registry refusing and then allowing a
promotion, its state read back by fresh processes (it lives on the compacted topic), and the
streams worker serving registry and evaluations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from continuum.settings import Settings
from jobs.topicread import read_to_end
from tests.integration.conftest import Broker, wait_for
from tests.integration.inference_procs import GatewayProc, InferenceWorkerProc
from tests.integration.streams_worker import StreamsWorker

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def cli(broker: Broker, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CONTINUUM_BOOTSTRAP_SERVERS": broker.bootstrap,
        "CONTINUUM_TOPIC_PREFIX": prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "continuum.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_evaluate_publish_and_promote(broker: Broker, prefix: str, tmp_path: Path) -> None:
    worker = InferenceWorkerProc(broker.bootstrap, prefix, "--model-version", "okla-smollm2-test")
    gateway = GatewayProc(broker.bootstrap, prefix)
    streams = StreamsWorker(broker.bootstrap, prefix, tmp_path / "home")
    try:
        for p in (worker, gateway):
            wait_for(p.up, 120, 0.3, what=lambda p=p: f"{p.what} up:\n{p.tail()}")
        url = f"http://127.0.0.1:{gateway.port}"
        version = "okla-smollm2-test"
        test_set = tmp_path / "test.jsonl"
        test_set.write_text(
            "\n".join(
                json.dumps(c)
                for c in (
                    {
                        "messages": [{"role": "user", "content": "Hola, busco una yipeta"}],
                        "expected_intent": "vehicle_search",
                    },
                    {
                        "messages": [{"role": "user", "content": "¿Financian carros?"}],
                        "expected_intent": "financing",
                    },
                    {
                        "messages": [{"role": "user", "content": "Quiero vender mi carro"}],
                        "expected_intent": "sell_vehicle",
                    },
                )
            )
            + "\n"
        )
        # Full run: SmolLM2 names no intents, so intent accuracy is 0 and the run fails (exit 3).
        full = cli(
            broker,
            prefix,
            "evaluate",
            "--test-data",
            str(test_set),
            "--server-url",
            url,
            "--output-dir",
            str(tmp_path / "full"),
            "--max-tokens",
            "32",
            "--concurrency",
            "2",
        )
        assert full.returncode == 3, full.stdout + full.stderr
        assert "intent_accuracy" in full.stdout and "verdict: FAIL" in full.stdout
        (report,) = (tmp_path / "full").glob("evaluation_report_*.json")
        summary = json.loads(report.read_text())["summary"]
        assert summary["cases"] == 3 and summary["errors"] == 0
        assert summary["checks"]["safety"]["prompts"] >= 10
        assert summary["checks"]["latency"]["p95"] > 0
        assert list((tmp_path / "full").glob("*_latency.png"))
        settings = Settings(bootstrap_servers=broker.bootstrap, topic_prefix=prefix)
        (published,) = list(read_to_end(settings, "evaluations"))
        assert (published["model_version"], published["passed"]) == (version, False)
        assert published["intent_accuracy"] == 0.0 and published["safety_prompts"] >= 10

        # Registry: register, promotion refused with the failed evaluation named.
        reg = cli(broker, prefix, "models", "register", version, "--artifact", "SmolLM2.gguf")
        assert reg.returncode == 0, reg.stderr
        refused = cli(broker, prefix, "models", "promote", version)
        assert refused.returncode == 1
        assert f"latest evaluation {published['evaluation_id']} failed" in refused.stderr
        again = cli(broker, prefix, "models", "register", version)
        assert again.returncode == 1 and "is CANDIDATE: cannot become CANDIDATE" in again.stderr

        # A latency-only evaluation passes; now promotion is allowed.
        lat = cli(
            broker,
            prefix,
            "evaluate",
            "--test-data",
            str(test_set),
            "--server-url",
            url,
            "--output-dir",
            str(tmp_path / "lat"),
            "--max-tokens",
            "16",
            "--skip-intent",
            "--skip-safety",
            "--skip-naturalness",
            "--skip-lead",
        )
        assert lat.returncode == 0, lat.stdout + lat.stderr
        # A pass that skipped seed dimensions is partial: refused unless allowed explicitly, and
        # then the promotion's reason says so.
        partial = cli(broker, prefix, "models", "promote", version)
        assert partial.returncode == 1
        assert "is partial (intent, safety, naturalness, lead_capture not evaluated" in (
            partial.stderr
        )
        promoted = cli(broker, prefix, "models", "promote", version, "--allow-partial")
        assert promoted.returncode == 0, promoted.stderr
        assert "CANDIDATE -> PROMOTED" in promoted.stdout
        assert "(partial: intent, safety, naturalness, lead_capture not evaluated" in (
            promoted.stdout
        )
        # A version with no evaluation at all is promoted by winning an experiment: the winner
        # names an arm, which resolves to the version it served.
        other = f"{version}-b"
        assert cli(broker, prefix, "models", "register", other).returncode == 0
        for action in ("create", "conclude"):
            args = ["--control", version, "--treatment", other]
            if action == "conclude":
                args += ["--winner", "treatment"]
            done = cli(broker, prefix, "experiments", action, "ab-gate", *args)
            assert done.returncode == 0, done.stderr
        won = cli(broker, prefix, "models", "promote", other)
        assert won.returncode == 0, won.stderr
        assert "won A/B experiment ab-gate (treatment arm)" in won.stdout
        assert f"{version}: PROMOTED -> RETIRED (replaced by {other})" in won.stdout
        # A fresh process reads the same state back from the compacted topic.
        listed = cli(broker, prefix, "models", "list")
        assert f"{other}" in listed.stdout and "PROMOTED" in listed.stdout
        retired = cli(broker, prefix, "models", "retire", other, "--reason", "test over")
        assert retired.returncode == 0 and "PROMOTED -> RETIRED" in retired.stdout
        final = cli(broker, prefix, "models", "promote", version)
        assert final.returncode == 1 and "retired is final" in final.stderr

        # The streams worker mirrors registry and evaluations (retrain criteria read them).
        wait_for(streams.ready, 90, what=lambda: streams.tail())

        def mirrored() -> bool:
            status, body = streams.get("/models/")
            return (
                status == 200
                and [r["state"] for r in body["registry"]] == ["RETIRED", "RETIRED"]
                and len(body["evaluations"]) == 1
                and body["evaluations"][0]["passed"] is True
            )

        wait_for(mirrored, 60, what=lambda: str(streams.get("/models/")))
    finally:
        for p in (streams, gateway, worker):
            p.stop()


def test_feedback_and_retraining_dataset_from_the_topic(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    from continuum.demo.chat import SimulatorConfig, TrafficSimulator
    from producers.producer import EventProducer

    feedback = []
    with EventProducer(broker.bootstrap, topic_prefix=prefix) as p:
        for schema, ev in TrafficSimulator(SimulatorConfig(turns=1500, seed=11)).events():
            if schema == "Feedback":
                p.send(schema, ev)
                feedback.append(ev)
    analyzed = cli(broker, prefix, "feedback", "analyze")
    assert analyzed.returncode == 0, analyzed.stderr
    summary = json.loads(analyzed.stdout)
    assert summary["total"] == len(feedback) > 300
    assert sum(summary["by_category"].values()) == len(feedback)

    out = tmp_path / "export"
    exported = cli(broker, prefix, "feedback", "export", "--output-dir", str(out))
    assert exported.returncode == 0, exported.stderr
    pairs = [json.loads(x) for x in (out / "feedback_training.jsonl").read_text().splitlines()]
    expected = [
        f
        for f in feedback
        if f.get("user_query")
        and (f.get("correction") or ((f.get("rating") or 0) >= 4 and f.get("bot_response")))
    ]
    assert len(pairs) == len(expected) > 0
    report = cli(broker, prefix, "feedback", "report", "--output-dir", str(out))
    assert report.returncode == 0 and "## By category" in (out / "feedback_report.md").read_text()

    collected = cli(broker, prefix, "retrain", "collect", "--output-dir", str(tmp_path / "c"))
    assert collected.returncode == 0, collected.stderr
    original = tmp_path / "original.jsonl"
    original.write_text(
        "\n".join(
            json.dumps(
                {
                    "session_id": f"orig-{i}",
                    "messages": [
                        {"role": "user", "content": f"¿Tienen el modelo número {i}?"},
                        {"role": "assistant", "content": f"Sí, el modelo {i} está disponible."},
                    ],
                }
            )
            for i in range(3000)
        )
        + "\n{broken\n"
    )
    prepared = cli(
        broker,
        prefix,
        "retrain",
        "prepare",
        "--new-data",
        str(tmp_path / "c/combined.jsonl"),
        "--original-data",
        str(original),
        "--output-dir",
        str(tmp_path / "p"),
    )
    assert prepared.returncode == 0, prepared.stderr
    manifest = json.loads((tmp_path / "p/manifest.json").read_text())
    assert manifest["unreadable_lines"] == [
        "original.jsonl:3001: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    ]
    assert manifest["merge"]["original_ratio"] == pytest.approx(0.7, abs=0.01)
    sessions: dict[str, set[str]] = {}
    for name in ("train", "eval", "test"):
        for line in (tmp_path / "p" / f"{name}.jsonl").read_text().splitlines():
            sessions.setdefault(json.loads(line)["session_id"], set()).add(name)
    assert all(len(v) == 1 for v in sessions.values())
    script = tmp_path / "retrain_colab.py"
    generated = cli(
        broker,
        prefix,
        "retrain",
        "generate-script",
        "--train-data",
        str(tmp_path / "p/train.jsonl"),
        "--eval-data",
        str(tmp_path / "p/eval.jsonl"),
        "--output-script",
        str(script),
    )
    assert generated.returncode == 0 and "FastLanguageModel" in script.read_text()
    compile(script.read_text(), str(script), "exec")
    check = cli(broker, prefix, "retrain", "check")
    assert check.returncode == 0 and "no retrain trigger has fired" in check.stdout
