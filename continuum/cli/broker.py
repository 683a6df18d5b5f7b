"""``continuum broker`` (the local Apache Kafka) and ``continuum topics``."""

from __future__ import annotations

import argparse
import json

from continuum.cli.common import Actions, Commands
from continuum.settings import Settings


def _cluster_size(args: argparse.Namespace, settings: Settings) -> int:
    from continuum.localkafka import LocalCluster

    return args.brokers if args.brokers > 1 else LocalCluster.saved_size(settings.home)


def start(args: argparse.Namespace, settings: Settings) -> int:
    from continuum.localkafka import LocalCluster, LocalKafka

    if args.brokers > 1:
        cluster = LocalCluster.from_settings(settings, args.brokers)
        print(f"Kafka cluster of {cluster.size} nodes (KRaft) at {cluster.start()}")
        return 0
    kafka = LocalKafka.from_settings(settings)
    kafka.secure_port = kafka.configured_secure_port()
    if args.secure or args.secure_port:
        kafka.secure_port = args.secure_port or kafka.secure_port or settings.kafka_port + 2
    bootstrap = kafka.start()
    print(
        f"Kafka {kafka.status()['kafka_version']} (KRaft) running at {bootstrap}, data in {kafka.data_dir}"
    )
    if kafka.secure_port:
        print(f"SASL_SSL listener at {kafka.secure_bootstrap}; a service connects with:")
        for name, value in kafka.client_env().items():
            print(f"  export {name}={value}")
    return 0


def stop(args: argparse.Namespace, settings: Settings) -> int:
    from continuum.localkafka import LocalCluster, LocalKafka

    size = _cluster_size(args, settings)
    if size > 1:
        stopped = LocalCluster.from_settings(settings, size).stop()
    else:
        stopped = LocalKafka.from_settings(settings).stop()
    print("stopped" if stopped else "not running")
    return 0


def reset(args: argparse.Namespace, settings: Settings) -> int:
    from continuum.localkafka import LocalCluster, LocalKafka

    size = _cluster_size(args, settings)
    if size > 1:
        folder = LocalCluster.from_settings(settings, size).reset()
    else:
        kafka = LocalKafka.from_settings(settings)
        kafka.reset()
        folder = kafka.data_dir
    print(f"stopped and removed {folder}")
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    from continuum.localkafka import LocalCluster, LocalKafka

    size = _cluster_size(args, settings)
    if size > 1:
        print(json.dumps(LocalCluster.from_settings(settings, size).status(), indent=2))
        return 0
    kafka = LocalKafka.from_settings(settings)
    print(json.dumps(kafka.status(), indent=2))
    return 0 if kafka.running() else 3


def topics(args: argparse.Namespace, settings: Settings) -> int:
    from continuum.admin import TopicAdmin
    from continuum.topics import all_specs

    admin = TopicAdmin(
        settings,
        settings.topic_prefix,
        replication_factor=settings.replication_factor,
        min_insync_replicas=settings.min_insync_replicas,
    )
    if args.action == "create":
        for name, state in admin.create().items():
            print(f"{state:8} {name}")
    elif args.action == "list":
        for name, parts in admin.list().items():
            print(f"{name}\t{parts} partitions")
    else:
        docs = {s.full_name(settings.topic_prefix): s for s in all_specs()}
        for st in admin.describe():
            spec = docs[st.name]
            state = f"{st.partitions} partitions" if st.exists else "MISSING"
            cfg = ", ".join(f"{k}={v}" for k, v in sorted(st.config.items()))
            print(
                f"{st.name}: {state}; {cfg}\n    record: {spec.schema or 'raw bytes + reason headers'}; "
                f"key: {spec.key_field or '-'}; {spec.doc}"
            )
    return 0


def register(sub: Commands) -> None:
    broker = Actions(
        sub, "broker", help="run the local Apache Kafka (KRaft): one node, or a cluster"
    )
    p = broker.add("start", start, help="start one node, or a local cluster with --brokers")
    p.add_argument(
        "--secure",
        action="store_true",
        help="add a SASL_SSL listener (SCRAM-SHA-512, a CA made for this broker home) on "
        "--secure-port, next to the plain one; prints the settings a service needs for it",
    )
    p.add_argument(
        "--secure-port", type=int, default=0, help="port of the SASL_SSL listener (default 9094)"
    )
    broker.add("stop", stop, help="stop it (the cluster, if one was started)")
    broker.add("status", status, help="running or not, version, ports; exit 3 when stopped")
    broker.add("reset", reset, help="stop it and remove its data")
    broker.shared(
        "--brokers",
        type=int,
        default=1,
        help="nodes: 1 (default), or a local cluster for trying failover (3: replication 3, "
        "min.insync.replicas 2); stop, status and reset find a started cluster by themselves",
    )

    t = Actions(sub, "topics", help="create, list or describe Continuum's topics")
    t.add("create", topics, help="create every topic that is missing (idempotent)")
    t.add("list", topics, help="the topics on the broker, with partitions")
    t.add("describe", topics, help="each topic's partitions, config, record and key")
