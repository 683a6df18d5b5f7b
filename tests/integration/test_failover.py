"""A local three-node cluster (replication 3, min.insync.replicas 2): one broker is SIGKILLed while
A/B traffic flows through the streams worker, then started again. The worker rides through the
leader moves and the totals are exact."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from continuum.admin import TopicAdmin
from continuum.localkafka import LocalCluster, free_port
from continuum.topics import all_specs, topic_spec
from producers.simulator import SimulatorConfig
from tests.integration.conftest import wait_for
from tests.integration.streams_worker import StreamsWorker
from tests.integration.traffic import Feed, wait_exact, wait_part_way

pytestmark = pytest.mark.integration


def test_a_broker_killed_mid_stream_on_a_three_node_cluster(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster", 3, port=free_port(), controller_port=free_port())
    bootstrap = cluster.start(timeout=240)
    prefix = "fo-"
    try:
        admin = TopicAdmin(bootstrap, prefix)
        assert admin.replication() == (3, 2)
        admin.create(all_specs())
        # Every topic is replicated on the three nodes.
        md = admin.admin.list_topics(timeout=10)
        turns = md.topics[topic_spec("chat.turns").full_name(prefix)]
        assert {len(p.replicas) for p in turns.partitions.values()} == {3}
        worker = StreamsWorker(bootstrap, prefix, tmp_path / "home")
        try:
            wait_for(worker.ready, 120, what=lambda: "streams worker:\n" + worker.tail())
            wait_for(lambda: worker.get("/health/")[1]["partitions"], 90)
            with Feed(bootstrap, prefix, SimulatorConfig(turns=20_000, rate=500, seed=13)) as feed:
                wait_part_way(worker, 2000)
                victim = cluster.node(2)
                victim.stop(kill=True)
                # The controller fences the dead broker and moves its partitions' leadership.
                wait_for(
                    lambda: "2" not in cluster.status().get("partitions_led_by_node", {"2": 1}),
                    60,
                    what=lambda: str(cluster.status()),
                )
                time.sleep(3)
                worker.check_alive("streams worker with a broker down")
                victim.start(wait=False)
                cluster.wait_ready(120)
                expected = feed.finish()
            wait_exact(worker, expected)
            worker.check_alive("streams worker after the failover")
        finally:
            worker.stop()
    finally:
        cluster.stop()
