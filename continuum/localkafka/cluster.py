"""A local cluster of brokers (KRaft, combined controller+broker nodes) for trying failover."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from continuum.localkafka.errors import BrokerError
from continuum.localkafka.node import LocalKafka, can_bind, free_port, new_cluster_id, port_open
from continuum.settings import Settings


@dataclass
class LocalCluster:
    """Several KRaft nodes (broker and controller each) on loopback, for trying failover: with 3
    nodes, internal topics are replicated 3 times with min.insync.replicas 2. Node N keeps its
    data in ``$CONTINUUM_HOME/kafka-cluster/node-N``; ports: the configured ones for node 1, then
    pairs from the broker port + 100."""

    home: Path
    size: int = 3
    port: int = 9092
    controller_port: int = 9093
    heap: str = "384m"

    @classmethod
    def on_free_ports(cls, home: Path, size: int = 3, attempts: int = 100) -> LocalCluster:
        """A cluster every one of whose node ports can be bound now (tests, benchmarks): the
        nodes after the first take ports derived from the first's, and one that another socket
        holds would keep that node from starting."""
        for _ in range(attempts):
            cluster = cls(home, size, port=free_port(), controller_port=free_port())
            ports = [p for n in cluster.nodes() for p in (n.port, n.controller_port)]
            if len(set(ports)) == len(ports) and all(can_bind(p) for p in ports):
                return cluster
        raise BrokerError(f"no {2 * size} free loopback ports found for a local cluster")

    @classmethod
    def from_settings(cls, settings: Settings, size: int) -> LocalCluster:
        return cls(settings.home, size, settings.kafka_port, settings.kafka_controller_port)

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "kafka-cluster" / "cluster.id"

    @staticmethod
    def saved_size(home: Path) -> int:
        """The size of the cluster last started under ``home`` (0: none)."""
        try:
            return int((home / "kafka-cluster" / "size").read_text().strip())
        except (OSError, ValueError):
            return 0

    def nodes(self) -> list[LocalKafka]:
        ports = [(self.port, self.controller_port)] + [
            (self.port + 100 + 2 * i, self.port + 101 + 2 * i) for i in range(self.size - 1)
        ]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_p, c) in enumerate(ports))
        if self.cluster_id_file.exists():
            cid = self.cluster_id_file.read_text().strip()
        else:
            cid = new_cluster_id()
        return [
            LocalKafka(
                self.home,
                p,
                c,
                self.heap,
                node_id=i + 1,
                voters=voters,
                cluster_id=cid,
                cluster_size=self.size,
            )
            for i, (p, c) in enumerate(ports)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes())

    def start(self, timeout: float = 180.0) -> str:
        nodes = self.nodes()
        self.cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
        self.cluster_id_file.write_text(nodes[0].cluster_id)
        (self.cluster_id_file.parent / "size").write_text(str(self.size))
        for node in nodes:
            if not node.running():
                node.start(timeout, wait=False)
        self.wait_ready(timeout)
        return self.bootstrap

    def wait_ready(self, timeout: float = 180.0, brokers: int | None = None) -> None:
        """Until the cluster's metadata lists ``brokers`` (default: every node)."""
        from confluent_kafka.admin import AdminClient

        want = self.size if brokers is None else brokers
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            live = [n for n in self.nodes() if port_open("127.0.0.1", n.port)]
            if live:
                admin = AdminClient({"bootstrap.servers": live[0].bootstrap, "log_level": 2})
                try:
                    seen = len(admin.list_topics(timeout=2).brokers)
                    if seen >= want:
                        return
                except Exception:
                    pass
            time.sleep(0.3)
        raise BrokerError(f"cluster has {seen} of {want} brokers after {timeout:.0f}s")

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes()[node_id - 1]

    def stop(self) -> bool:
        stopped = [n.stop() for n in self.nodes()]
        return any(stopped)

    def reset(self) -> Path:
        """Stop every node and remove the cluster's data; returns the folder removed."""
        self.stop()
        folder = self.cluster_id_file.parent
        shutil.rmtree(folder, ignore_errors=True)
        return folder

    def status(self) -> dict[str, object]:
        """Each node, and per topic the leaders and the partitions under-replicated."""
        from confluent_kafka.admin import AdminClient

        out: dict[str, object] = {
            "nodes": [
                {"node_id": n.node_id, "running": n.running(), "bootstrap": n.bootstrap}
                for n in self.nodes()
            ]
        }
        live = [n for n in self.nodes() if port_open("127.0.0.1", n.port)]
        if live:
            try:
                md = AdminClient(
                    {"bootstrap.servers": live[0].bootstrap, "log_level": 2}
                ).list_topics(timeout=5)
                under = []
                leaders: dict[str, int] = {}
                for name, t in md.topics.items():
                    for p in t.partitions.values():
                        leaders[str(p.leader)] = leaders.get(str(p.leader), 0) + 1
                        if len(p.isrs) < len(p.replicas):
                            under.append(f"{name}[{p.id}]")
                out["partitions_led_by_node"] = leaders
                out["under_replicated"] = sorted(under)
            except Exception as exc:  # status is a report
                out["error"] = str(exc)
        return out
