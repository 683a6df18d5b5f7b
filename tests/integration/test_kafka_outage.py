"""The only broker of a single-node cluster stops for 15 s while A/B traffic flows through every
service: each is still running afterwards, the totals are exact, /health says Kafka is
unreachable, the seed's DATABASE_ERROR opens once, resolves and reaches the webhook once, and the
outage costs each service's log a few lines, not thousands."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from continuum.admin import TopicAdmin
from continuum.localkafka import LocalKafka, free_port
from continuum.topics import all_specs, topic_spec
from schemas.serde import AvroDeserializer
from tests.integration.conftest import wait_for
from tests.integration.fakes import FakeSlack
from tests.integration.kafka_read import read_topic
from tests.integration.streams_worker import StreamsWorker
from tests.integration.traffic import archived, cli_child, wait_exact, wait_part_way

pytestmark = pytest.mark.integration
OUTAGE_S = 15


def database_alerts(bootstrap: str, prefix: str) -> list[tuple[str, str]]:
    """(status, transition) of each distinct DATABASE_ERROR event on the alerts topic."""
    topic = topic_spec("alerts").full_name(prefix)
    records = [AvroDeserializer().decode(v).record for v, _ in read_topic(bootstrap, topic)]
    distinct = {a["event_id"]: a for a in records}
    return [
        (a["status"], a["details"].get("transition", ""))
        for a in distinct.values()
        if a["alert_type"] == "DATABASE_ERROR"
    ]


def test_a_broker_outage_is_ridden_through_by_every_service(tmp_path: Path) -> None:
    """The SDK producer (``continuum simulate``), the streams worker, the archive and the alert
    consumer all run while the broker is away: each is still running afterwards, the worker's
    totals and the archive are exact, each alert reaches the webhook once, and each service's
    log holds a few lines for the outage."""
    kafka = LocalKafka(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    bootstrap = kafka.start(timeout=180)
    prefix = "outage-"
    TopicAdmin(bootstrap, prefix).create(all_specs())
    hook = FakeSlack()
    worker = StreamsWorker(bootstrap, prefix, tmp_path / "home")
    home = tmp_path / "jobs"
    archive = cli_child(bootstrap, prefix, home, "archive", "--topics", "chat.turns")
    alerts = cli_child(bootstrap, prefix, home, "alerts", "webhook", CONTINUUM_WEBHOOK_URL=hook.url)
    turns = 30_000
    feed = cli_child(
        bootstrap,
        prefix,
        home,
        *("simulate", "--realtime", "--seed", "12", "--turns", str(turns), "--rate", "600"),
    )
    services = {"streams worker": worker, "archive": archive, "alert consumer": alerts}
    try:
        wait_for(worker.ready, 90, what=lambda: "streams worker:\n" + worker.tail())
        wait_for(lambda: worker.get("/health/")[1]["partitions"], 60)
        wait_part_way(worker, 3000, 60)
        wait_for(lambda: len(archived(home, "chat.turns")) >= 1000, 60, what=archive.tail)
        services["SDK producer"] = feed
        marks = {name: len(c.lines) for name, c in services.items()}
        kafka.stop()  # SIGTERM: the broker shuts down; the producers keep buffering
        stopped = time.monotonic()
        unreachable = None
        while time.monotonic() - stopped < OUTAGE_S:
            status, health = worker.get("/health/")
            if health and any("Kafka unreachable since" in r for r in health["reasons"]):
                unreachable = (status, health["status"])
            time.sleep(0.5)
        assert unreachable == (503, "UNHEALTHY"), worker.get("/health/")
        for name, child in services.items():
            child.check_alive(f"{name} during the outage")
        during = {name: len(c.lines) - marks[name] for name, c in services.items()}
        assert feed.proc.poll() is None, "the traffic ended before the outage: nothing was tested"
        kafka.start(timeout=180)
        assert feed.proc.wait(240) == 0, feed.tail()
        sent = re.search(r"sent (\d+) chat turns and (\d+) feedback", "".join(feed.lines))
        assert sent, feed.tail()
        expected = (int(sent[1]), int(sent[2]))
        assert expected[0] == turns
        wait_exact(worker, expected)
        for name in ("streams worker", "archive", "alert consumer"):
            services[name].check_alive(f"{name} after the outage")
        wait_for(lambda: "Kafka unreachable" not in str(worker.get("/health/")[1]), 30)
        wait_for(
            lambda: (
                database_alerts(bootstrap, prefix) == [("OPEN", "opened"), ("RESOLVED", "resolved")]
            ),
            60,
            what=lambda: str(database_alerts(bootstrap, prefix)),
        )
        # The archive holds every turn once.
        wait_for(
            lambda: len(archived(home, "chat.turns")) >= turns,
            90,
            what=lambda: f"{len(archived(home, 'chat.turns'))} archived:\n{archive.tail()}",
        )
        ids = archived(home, "chat.turns")
        assert len(ids) == len(set(ids)) == turns
        # Every alert on the topic reaches the webhook, and none twice.
        topic = topic_spec("alerts").full_name(prefix)
        on_topic = {
            AvroDeserializer().decode(v).record["event_id"] for v, _ in read_topic(bootstrap, topic)
        }

        def posted() -> list[str]:
            return [m["alert"]["event_id"] for m in list(hook.accepted)]

        def hooked_database() -> list[tuple[str, int]]:
            """(status, updates it stands for) of each DATABASE_ERROR message the hook took: the
            alert consumer cannot read during the outage, so the opening and the resolve may
            arrive in one poll and be posted as one message standing for both."""
            return [
                (m["alert"]["status"], 1 + m["collapsed"])
                for m in list(hook.accepted)
                if m["alert"]["alert_type"] == "DATABASE_ERROR"
            ]

        wait_for(
            lambda: hooked_database() in ([("OPEN", 1), ("RESOLVED", 1)], [("RESOLVED", 2)]),
            60,
            what=lambda: f"{hooked_database()}:\n{alerts.tail()}",
        )
        assert len(posted()) == len(set(posted())), posted()
        assert set(posted()) <= on_topic
        print(f"log lines during the {OUTAGE_S} s outage: {during}")
        for name, n in during.items():
            child = services[name]
            assert n < 50, f"{name}:\n" + "".join(child.lines[marks[name] : marks[name] + 80])
        assert len(worker.lines) - marks["streams worker"] < 100, worker.tail(100)
    finally:
        for child in (feed, alerts, archive, worker):
            child.stop()
        hook.close()
        kafka.stop()


def test_inference_calls_during_an_outage_are_answered_or_fail_clearly(tmp_path: Path) -> None:
    """Chats sent to the gateway while the only broker is down for 15 s: the gateway and the
    inference worker keep running, and every call ends, answered once Kafka is back or with
    the gateway's timeout error; none hangs."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.integration.inference_procs import GatewayProc, InferenceWorkerProc

    kafka = LocalKafka(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    bootstrap = kafka.start(timeout=180)
    prefix = "outage-inf-"
    TopicAdmin(bootstrap, prefix).create(all_specs())
    worker = InferenceWorkerProc(bootstrap, prefix)
    gateway = GatewayProc(bootstrap, prefix, "--request-timeout-s", "60")
    pool = ThreadPoolExecutor(4)
    try:
        for proc in (worker, gateway):
            wait_for(proc.up, 120, 0.3, what=lambda p=proc: f"{p.what} up:\n{p.tail()}")
        body = {"messages": [{"role": "user", "content": "Hola"}], "max_tokens": 8}
        assert gateway.chat(body)[0] == 200
        marks = (len(worker.lines), len(gateway.lines))
        kafka.stop()
        calls = [
            pool.submit(gateway.chat, body, {"X-Request-Id": f"out-{i}"}, 120) for i in range(4)
        ]
        time.sleep(OUTAGE_S)
        for proc in (worker, gateway):
            proc.check_alive(f"{proc.what} during the outage")
        lines = (len(worker.lines) - marks[0], len(gateway.lines) - marks[1])
        kafka.start(timeout=180)
        results = [c.result(timeout=150) for c in calls]  # none hangs
        statuses = [s for s, _ in results]
        assert set(statuses) <= {200, 504}, results
        for status, answer in results:
            if status == 504:
                assert answer["error"]["type"], answer  # OpenAI-shaped, says what happened
        print(f"calls during the outage: {statuses}; log lines (worker, gateway): {lines}")
        assert max(lines) < 50, worker.tail(60) + gateway.tail(60)
        again = gateway.chat(body)  # and the path works again
        assert again[0] == 200, (again, worker.tail(60), gateway.tail(20))
    finally:
        pool.shutdown(wait=False)
        for proc in (gateway, worker):
            proc.stop()
        kafka.stop()


def test_the_judge_rides_through_an_outage_and_scores_each_sampled_turn(tmp_path: Path) -> None:
    """The only broker stops for 15 s while the LLM judge is part-way through the sampled
    turns: the judge and the inference worker keep running, say so in a few log lines, and
    once Kafka is back every sampled turn has its score, under the id derived from the turn
    (a turn judged again after a rebalance repeats the same id: readers keep one)."""
    from collections import Counter
    from types import SimpleNamespace

    from continuum.demo.chat import SimulatorConfig, TrafficSimulator
    from jobs.rubric import sampled
    from schemas.ids import stable_id
    from tests.integration.inference_procs import InferenceWorkerProc, JudgeProc
    from tests.integration.kafka_read import read_all
    from tests.integration.traffic import produce

    pytest.importorskip("llama_cpp")
    rate = 0.06
    kafka = LocalKafka(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    bootstrap = kafka.start(timeout=180)
    broker = SimpleNamespace(bootstrap=bootstrap)
    prefix = "outage-judge-"
    TopicAdmin(bootstrap, prefix).create(all_specs())
    worker = InferenceWorkerProc(bootstrap, prefix)
    judge = JudgeProc(
        bootstrap,
        prefix,
        *("--judge-sample-rate", str(rate), "--judge-tokens-per-minute", "0"),
        *("--judge-max-tokens", "48"),
    )
    try:
        for proc in (worker, judge):
            wait_for(proc.up, 120, 0.3, what=lambda p=proc: f"{p.what} up:\n{p.tail()}")
        cfg = SimulatorConfig(turns=300, rate=50, seed=43)
        produce(broker, prefix, cfg)  # type: ignore[arg-type]
        turns = [ev for kind, ev in TrafficSimulator(cfg).events() if kind == "ChatTurn"]
        expected = {t["event_id"] for t in turns if sampled(t["event_id"], rate)}
        assert len(expected) >= 8

        def scores() -> list[dict]:
            return [e.event for e in read_all(broker, prefix, ["judge.scores"], idle_polls=2)]

        wait_for(lambda: len(scores()) >= 3, 300, what=judge.tail)
        before = {s["turn_id"] for s in scores()}
        assert before < expected, "every turn was judged before the outage: nothing was tested"
        marks = (len(worker.lines), len(judge.lines))
        kafka.stop()
        time.sleep(OUTAGE_S)
        for proc in (worker, judge):
            proc.check_alive(f"{proc.what} during the outage")
        lines = (len(worker.lines) - marks[0], len(judge.lines) - marks[1])
        kafka.start(timeout=180)
        wait_for(
            lambda: {s["turn_id"] for s in scores()} >= expected,
            400,
            what=lambda: f"{len(expected)} sampled, scored {len(scores())}:\n{judge.tail(40)}",
        )
        got = scores()
        assert {s["turn_id"] for s in got} == expected  # none lost, none for an unsampled turn
        assert all(s["event_id"] == stable_id("judge", s["turn_id"]) for s in got)
        repeats = sum(Counter(s["event_id"] for s in got).values()) - len(expected)
        for proc in (worker, judge):
            proc.check_alive(f"{proc.what} after the outage")
        print(
            f"judge outage: {len(before)} of {len(expected)} scored before it, {repeats} "
            f"repeated ids after it; log lines (worker, judge): {lines}"
        )
        assert max(lines) < 50, worker.tail(60) + judge.tail(60)
    finally:
        for proc in (judge, worker):
            proc.stop()
        kafka.stop()
