"""A real Apache Kafka (KRaft) on 127.0.0.1, run from Maven Central jars: one node
(:class:`LocalKafka`, with an optional SASL_SSL listener) or a local cluster (:class:`LocalCluster`).
The demo, the integration tests and the benchmarks start it; production runs its own Kafka."""

from continuum.localkafka.cluster import LocalCluster
from continuum.localkafka.errors import BrokerError
from continuum.localkafka.node import (
    LocalKafka,
    can_bind,
    free_port,
    kafka_version,
    new_cluster_id,
    port_open,
)

__all__ = [
    "BrokerError",
    "LocalCluster",
    "LocalKafka",
    "can_bind",
    "free_port",
    "kafka_version",
    "new_cluster_id",
    "port_open",
]
