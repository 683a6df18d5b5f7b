"""The Faust application: ``create_app(settings)`` wires topics, tables, agents, views and timers.

Run it with ``continuum streams worker`` (settings from the environment and flags)."""

from __future__ import annotations

import asyncio
import logging
import time

import faust
from confluent_kafka import TopicPartition

from continuum import kafka as clients
from continuum import logthrottle
from continuum.admin import TopicAdmin
from continuum.kafka import Connection
from continuum.topics import topic_spec
from streams import stage1, stage2
from streams.agents import alerts
from streams.kafka_auth import faust_credentials
from streams.layout import Stage1Layout
from streams.logic.alert_rules import memory_requests, store_requests, worker_requests
from streams.pipeline import Pipeline
from streams.resources import memory_limit_bytes, rss_bytes
from streams.settings import StreamsSettings

log = logging.getLogger(__name__)


def create_app(
    settings: StreamsSettings, replication: tuple[int, int] = (1, 1)
) -> tuple[faust.App, Pipeline]:
    """``replication``: (replication factor, min.insync.replicas) of the topics the app creates
    (``run_worker`` asks the cluster; see continuum.admin.replication_for)."""
    datadir = settings.home / "streams" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.topic_prefix}{settings.app_id}",
        broker=f"kafka://{settings.bootstrap_servers}",
        broker_credentials=faust_credentials(settings.kafka),
        store="memory://",
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.canonical_url(),
        topic_partitions=settings.partials_partitions,
        topic_replication_factor=replication[0],
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_commit_interval=1.0,
        producer_acks=-1,
        table_standby_replicas=0,
        autodiscover=False,
        datadir=str(datadir),
    )
    pipe = Pipeline(app, settings)
    stage1.register(pipe)
    stage2.register(pipe)
    alerts.register(pipe)
    from streams import seed_api, views

    views.register(pipe)
    seed_api.register(pipe)

    @app.task
    async def _start_mirror() -> None:
        pipe.start_mirror()

    @app.timer(interval=5.0, on_leader=True)
    async def _inference_workers() -> None:
        # One streams worker (the leader) watches the inference workers' heartbeats; the alert
        # owner decides what is opened, reminded or resolved.
        with pipe.live.lock:
            heartbeats = dict(pipe.live.heartbeats)
            open_keys = set(pipe.live.alerts_open)
        for req in worker_requests(heartbeats, int(time.time() * 1000), pipe.cfg.alerts):
            if req["status"] == "OPEN" or req["dedup_key"] in open_keys:
                await alerts.send_request(pipe, req)

    layout = Stage1Layout.of(settings)
    me = settings.canonical_url().removeprefix("http://")
    limit = settings.memory_limit_mb * 2**20 if settings.memory_limit_mb else memory_limit_bytes()

    # Every 5 s: an outage shows on /health and as DATABASE_ERROR within seconds.
    @app.timer(interval=5.0)
    async def _lag() -> None:
        loop = asyncio.get_running_loop()
        lag, error = await loop.run_in_executor(
            None,
            consumer_lag,
            settings.kafka,
            layout.group,
            list(layout.topics.values()),
        )
        pipe.lag = lag
        for topic, n in pipe.lag.items():
            pipe.metrics.lag.labels(topic).set(n)
        now = int(time.time() * 1000)
        with pipe.live.lock:
            open_keys = set(pipe.live.alerts_open)
        # Kafka holds every table and changelog: failing to read its metadata is the seed's
        # DATABASE_ERROR, raised once (the owner de-duplicates) and resolved when it answers.
        key = f"database:kafka@{me}"
        if error is not None:
            if pipe.kafka_down_since is None:  # once per outage (Faust's producer holds it)
                pipe.kafka_down_since = now
                for req in store_requests(f"kafka@{me}", error, now):
                    await alerts.send_request(pipe, req)
        else:
            was_down, pipe.kafka_down_since = pipe.kafka_down_since, None
            if was_down is not None or key in open_keys:
                for req in store_requests(f"kafka@{me}", None, now):
                    await alerts.send_request(pipe, req)
        for req in memory_requests(f"streams@{me}", rss_bytes(), limit, now, pipe.cfg.alerts):
            if req["status"] == "OPEN" or req["dedup_key"] in open_keys:
                await alerts.send_request(pipe, req)

    return app, pipe


def consumer_lag(
    kafka: str | Connection, group: str, topics: list[str]
) -> tuple[dict[str, int], str | None]:
    """Records between the group's committed offsets and the end of each input topic, and the
    error when Kafka could not tell."""
    c = clients.consumer(kafka, group)
    try:
        md = c.list_topics(timeout=3)
        out: dict[str, int] = {}
        for topic in topics:
            if topic not in md.topics:
                continue
            tps = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
            committed = c.committed(tps, timeout=5)
            lag = 0
            for tp in committed:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=5)
                lag += hi - (tp.offset if tp.offset >= 0 else lo)
            out[topic] = lag
        return out, None
    except Exception as exc:  # lag is best effort; health reports it as unknown
        log.warning("consumer lag unavailable: %s", exc)
        return {}, f"cannot read offsets from Kafka: {exc}"
    finally:
        c.close()


def internal_topics(app: faust.App, pipe: Pipeline) -> dict[str, tuple[int, dict[str, str]]]:
    """The app's own topics: the partials topic, stage 1's changelogs and every table's
    changelog (compacted), with their partition counts."""
    n = app.conf.topic_partitions
    topics = {pipe.partials_topic.get_topic_name(): (pipe.partials_topic.partitions or n, {})}
    # Declared topics this worker consumes and that an older deployment may not have created:
    # the alert owner's requests, and the threshold overrides the mirror reads from the start.
    for name in ("alert-requests", "thresholds"):
        spec = topic_spec(name)
        topics[spec.full_name(pipe.settings.topic_prefix)] = (spec.partitions, spec.config())
    layout = Stage1Layout.of(pipe.settings)
    for source, name in layout.changelogs.items():
        topics[name] = (layout.partitions[source], {"cleanup.policy": "compact"})
    for table in app.tables.values():
        changelog = table.changelog_topic
        topics[changelog.get_topic_name()] = (
            changelog.partitions or n,
            {"cleanup.policy": "compact"},
        )
    return topics


def declare_internal_topics(
    admin: TopicAdmin, topics: dict[str, tuple[int, dict[str, str]]], timeout_s: float = 30.0
) -> None:
    """Create the app's internal topics before Faust subscribes, and wait until the broker lists
    them. On a fresh cluster Faust's consumer otherwise fetches metadata before its own topic
    creation has propagated, logs "Ignoring missing topic", and stage 2 stays unassigned until the
    next metadata refresh (minutes): no drift signals, no A/B results (seen in the demo test)."""
    admin.create_named(topics, timeout_s)
    deadline = time.monotonic() + timeout_s
    while missing := set(topics) - set(admin.list(timeout=5)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"internal topics not visible after {timeout_s} s: {missing}")
        time.sleep(0.2)


def run_worker(settings: StreamsSettings, loglevel: str = "warn") -> None:
    import sys

    admin = TopicAdmin(
        settings,
        replication_factor=settings.replication_factor,
        min_insync_replicas=settings.min_insync_replicas,
    )
    replication = admin.replication()
    app, pipe = create_app(settings, replication)
    declare_internal_topics(admin, internal_topics(app, pipe))
    # aiokafka (Faust's client) logs every failed request while a broker is away: once per
    # kind of line per 30 s, with a count, instead.
    logthrottle.install()
    sys.argv = [
        "continuum-streams",
        "worker",
        "-l",
        loglevel,
        "--web-port",
        str(settings.web_port),
        "--web-host",
        settings.web_host,
    ]
    app.main()
