"""A local three-node cluster (replication 3, min.insync.replicas 2) while A/B traffic flows
through the streams worker and the archive and chats through the gateway and the inference
worker: one broker SIGKILLed and started again, and a rolling restart of all three. Every service
rides through the leader moves, the totals and the archive are exact, and every chat ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from continuum.admin import TopicAdmin
from continuum.demo.chat import SimulatorConfig
from continuum.localkafka import LocalCluster
from continuum.topics import all_specs, topic_spec
from tests.integration.conftest import wait_for
from tests.integration.inference_procs import ChatProbe, GatewayProc, InferenceWorkerProc
from tests.integration.streams_worker import StreamsWorker
from tests.integration.traffic import Feed, archived, cli_child, wait_exact, wait_part_way

pytestmark = pytest.mark.integration


def _kill_one(cluster: LocalCluster) -> None:
    """SIGKILL node 2; once its partitions have new leaders, start it again."""
    victim = cluster.node(2)
    victim.stop(kill=True)
    # The controller fences the dead broker and moves its partitions' leadership.
    wait_for(
        lambda: "2" not in cluster.status().get("partitions_led_by_node", {"2": 1}),
        60,
        what=lambda: str(cluster.status()),
    )
    time.sleep(3)
    victim.start(wait=False)
    cluster.wait_ready(120)


def _rolling_restart(cluster: LocalCluster) -> None:
    """Each node in turn stopped (controlled shutdown) and started again, as patching does."""
    for node in cluster.nodes():
        node.stop()
        time.sleep(2)
        node.start(wait=False)
        cluster.wait_ready(120)
        # The next node goes only once nothing is under-replicated (as an operator waits).
        wait_for(lambda: not cluster.status().get("under_replicated", ["?"]), 90)


@pytest.mark.parametrize("disruption", [_kill_one, _rolling_restart], ids=["kill", "rolling"])
def test_the_streams_worker_rides_through_on_a_three_node_cluster(
    tmp_path: Path, disruption: Callable[[LocalCluster], None]
) -> None:
    cluster = LocalCluster.on_free_ports(tmp_path / "cluster", 3)
    bootstrap = cluster.start(timeout=240)
    prefix = "fo-"
    try:
        admin = TopicAdmin(bootstrap, prefix)
        assert admin.replication() == (3, 2)
        admin.create(all_specs())
        # Every topic is replicated on the three nodes.
        name = topic_spec("chat.turns").full_name(prefix)
        # A new cluster's metadata reaches every node a moment after the topics exist.
        wait_for(lambda: name in admin.admin.list_topics(timeout=10).topics, 60)
        md = admin.admin.list_topics(timeout=10)
        turns = md.topics[name]
        assert {len(p.replicas) for p in turns.partitions.values()} == {3}
        home = tmp_path / "home"
        worker = StreamsWorker(bootstrap, prefix, home)
        inference = InferenceWorkerProc(bootstrap, prefix)
        gateway = GatewayProc(bootstrap, prefix, "--request-timeout-s", "60")
        archive = cli_child(bootstrap, prefix, home, "archive", "--topics", "chat.feedback")
        services = {
            "streams worker": worker,
            "inference worker": inference,
            "gateway": gateway,
            "archive": archive,
        }
        try:
            wait_for(worker.ready, 120, what=lambda: "streams worker:\n" + worker.tail())
            wait_for(lambda: worker.get("/health/")[1]["partitions"], 90)
            for proc in (inference, gateway):
                wait_for(proc.up, 180, 0.3, what=lambda p=proc: f"{p.what} up:\n{p.tail()}")
            # Traffic must outlast the disruption: a rolling restart of three nodes takes about
            # two minutes here while every service runs (80 s of traffic ran out once).
            seconds = 80 if disruption is _kill_one else 200
            cfg = SimulatorConfig(turns=500 * seconds, rate=500, seed=13)
            with Feed(bootstrap, prefix, cfg) as feed, ChatProbe(gateway) as probe:
                wait_part_way(worker, 2000)
                began = time.monotonic()
                disruption(cluster)
                ended = time.monotonic()
                for name, child in services.items():
                    child.check_alive(f"{name} after the disruption")
                assert feed.alive(), "traffic ended during the disruption: test it longer"
                expected = feed.finish()
                back = time.monotonic()
                wait_for(lambda: probe.answered_after(back) is not None, 90)  # chats work again
            wait_exact(worker, expected)
            for name, child in services.items():
                child.check_alive(f"{name} at the end")
            # Chats sent while leaders moved: each ended, answered or with the gateway's
            # clear timeout error; none hung.
            assert not probe.stuck, probe.stuck
            during = [status for sent, _, status in probe.calls if began <= sent <= ended]
            assert during, "no chat was sent during the disruption"
            assert set(during) <= {200, 504}, during
            print(f"chats during the disruption: {during.count(200)} answered of {len(during)}")
            # The archive holds every feedback event once.
            wait_for(lambda: len(archived(home, "chat.feedback")) >= expected[1], 90)
            ids = archived(home, "chat.feedback")
            assert len(ids) == len(set(ids)) == expected[1]
        finally:
            for child in (archive, gateway, inference, worker):
                child.stop()
    finally:
        cluster.stop()
