"""A local three-node cluster (replication 3, min.insync.replicas 2): one broker is SIGKILLed while
A/B traffic flows through the streams worker, then started again. The worker rides through the
leader moves and the totals are exact."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from continuum.admin import TopicAdmin
from continuum.localkafka import LocalCluster, free_port
from continuum.topics import all_specs, topic_spec
from producers.producer import EventProducer
from producers.simulator import SimulatorConfig, run
from tests.integration.conftest import wait_for
from tests.integration.streams_worker import StreamsWorker
from tests.integration.test_streams import ab_totals

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
        producer = EventProducer(bootstrap, topic_prefix=prefix)
        counts = {"ChatTurn": 0, "Feedback": 0, "Experiment": 0}
        try:
            wait_for(worker.ready, 120, what=lambda: "streams worker:\n" + worker.tail())
            wait_for(lambda: worker.get("/health/")[1]["partitions"], 90)

            def send(schema: str, ev: dict) -> None:
                producer.send(schema, ev, prepare=False)
                counts[schema] += 1

            cfg = SimulatorConfig(turns=20_000, rate=500, seed=13)
            feeder = threading.Thread(target=run, args=(send, cfg), kwargs={"realtime": True})
            feeder.start()
            wait_for(lambda: (ab_totals(worker) or (0, 0))[0] >= 2000, 90, what=worker.tail)
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
            feeder.join()
            assert producer.flush(120) == 0
            expected = (counts["ChatTurn"], counts["Feedback"])
            wait_for(
                lambda: ab_totals(worker) == expected,
                240,
                what=lambda: f"totals {expected}, last {ab_totals(worker)}:\n{worker.tail()}",
            )
            worker.check_alive("streams worker after the failover")
        finally:
            producer.close(raise_on_failure=False)
            worker.stop()
    finally:
        cluster.stop()
