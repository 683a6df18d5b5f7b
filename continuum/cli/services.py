"""The long-running services: ``continuum streams worker``, ``continuum infer worker|gateway``
(and the inference bench and export), ``continuum model-server``, ``continuum alerts`` and
``continuum archive``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from continuum.cli.common import (
    Actions,
    Commands,
    add_service_flags,
    command,
    service_settings,
    stop_on_signals,
)
from continuum.settings import Settings

if TYPE_CHECKING:
    from inference.settings import InferenceSettings


def streams_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import run_worker
    from streams.settings import StreamsSettings

    run_worker(service_settings(args, settings, StreamsSettings), args.loglevel)
    return 0


def _inference(args: argparse.Namespace, settings: Settings) -> InferenceSettings:
    from inference.settings import InferenceSettings

    logging.getLogger("inference").setLevel(logging.INFO)
    return service_settings(args, settings, InferenceSettings)


def infer_worker(args: argparse.Namespace, settings: Settings) -> int:
    from inference.service import serve_worker

    asyncio.run(serve_worker(_inference(args, settings)))
    return 0


def infer_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from inference.service import serve_gateway

    asyncio.run(serve_gateway(_inference(args, settings)))
    return 0


def infer_bench(args: argparse.Namespace, settings: Settings) -> int:
    from inference.bench import run_bench

    report = asyncio.run(
        run_bench(
            _inference(args, settings),
            url=args.url,
            requests=args.requests,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
        )
    )
    print(json.dumps(report, indent=2))
    return 0


def infer_export(args: argparse.Namespace, settings: Settings) -> int:
    from inference.export import export_hf

    out = export_hf(_inference(args, settings).model_path or None, args.out)
    print(f"wrote a Hugging Face model folder for vLLM to {out}")
    return 0


def alerts(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.alert_consumer import AlertDelivery, Target
    from jobs.notify import RetryPolicy

    url = settings.slack_webhook_url if args.target == "slack" else settings.webhook_url
    delivery = AlertDelivery(
        settings,
        Target.of(args.target, url),
        group_id=args.group_id,
        policy=RetryPolicy(max_attempts=args.max_attempts),
    )
    stop_on_signals(delivery.stop_event)
    logging.getLogger("jobs").setLevel(logging.INFO)
    delivery.run()
    print(
        f"posted {delivery.posted}, skipped {delivery.skipped} already delivered, "
        f"dead-lettered {delivery.dead_lettered}"
    )
    return 0


def judge(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.judge import JudgeConfig, JudgeService, serve_http

    service = JudgeService(
        settings,
        JudgeConfig(
            sample_rate=settings.judge_sample_rate,
            tokens_per_minute=settings.judge_tokens_per_minute,
            max_tokens=settings.judge_max_tokens,
            timeout_s=settings.judge_timeout_s,
            model=settings.judge_model or None,
        ),
    )
    server, _ = serve_http(service, args.host, args.port)
    stop_on_signals(service.stop_event)
    logging.getLogger("jobs").setLevel(logging.INFO)
    print(f"judge: /calibration and /metrics on http://{args.host}:{args.port}", flush=True)
    try:
        service.run()
    finally:
        server.shutdown()
    print(f"judge stopped: {service.written} scores written")
    return 0


def archive(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.archive import ArchiveSink

    sink = ArchiveSink(settings, args.topics.split(","), root=args.root and Path(args.root))
    stop_on_signals(sink.stop_event)
    print(f"archiving {args.topics} to {sink.root} (Ctrl-C to stop)")
    sink.run()
    print(f"archived {sink.archived} records")
    return 0


def model_server(args: argparse.Namespace, settings: Settings) -> int:
    from inference.dispatch.model import load_or_train
    from inference.dispatch.server import serve

    logging.getLogger("inference").setLevel(logging.INFO)
    folder = Path(args.model_dir) if args.model_dir else settings.home / "models" / "dispatch"
    model = load_or_train(folder / args.version, args.version, retrain=args.retrain)
    if args.register:
        register_model(settings, model.version, folder / args.version, model.info)
    try:
        asyncio.run(serve(model, args.host, args.port, folder / args.version))
    except KeyboardInterrupt:
        pass
    return 0


def register_model(settings: Settings, version: str, folder: Path, info: dict) -> None:
    """Register a served version with its training metrics, unless the registry knows it."""
    from jobs.registry import load_registry
    from producers import EventProducer

    registry = load_registry(settings)
    if registry.state(version) is not None:
        print(f"{version} is already registered ({registry.state(version)})", flush=True)
        return
    event = registry.register(
        version,
        int(time.time() * 1000),
        trained_at=info.get("trained_at"),
        artifact_uri=str(folder),
        dataset=f"synthetic dispatches (seed {info.get('seed')})",
        reason="registered by the model server with its training metrics",
        training_metrics=json.dumps(info["training_metrics"], separators=(",", ":")),
    )
    with EventProducer.from_settings(settings) as p:
        p.send("ModelVersion", event)
    print(f"registered {version} with its training metrics", flush=True)


def register(sub: Commands) -> None:
    from inference.settings import InferenceSettings
    from streams.settings import StreamsSettings

    streams = Actions(
        sub, "streams", help="run the Faust analytics worker (drift, A/B, alerts, health)"
    )
    p = streams.add("worker", streams_worker, help="join the streams workers' group")
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    add_service_flags(p, StreamsSettings)

    infer = Actions(
        sub, "infer", help="LLM inference over Kafka: worker, OpenAI-compatible gateway, bench"
    )
    infer.add("worker", infer_worker, help="answer inference.requests with the configured engine")
    infer.add("gateway", infer_gateway, help="serve POST /v1/chat/completions over Kafka")
    p = infer.add("bench", infer_bench, help="load a gateway and report latency and tokens/s")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="gateway base URL")
    p.add_argument("--requests", type=int, default=50, help="number of calls")
    p.add_argument("--concurrency", type=int, default=8, help="calls in flight")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens per answer")
    p = infer.add("export-hf", infer_export, help="GGUF -> Hugging Face folder for vLLM")
    p.add_argument("--out", default=".continuum/models/smollm2-hf", help="output folder")
    for leaf in infer.leaves:
        add_service_flags(leaf, InferenceSettings)

    p = command(
        sub,
        "alerts",
        alerts,
        help="deliver the alerts topic to Slack or a JSON webhook (never twice)",
    )
    p.add_argument(
        "target",
        choices=["slack", "webhook"],
        help="slack: Block Kit to CONTINUUM_SLACK_WEBHOOK_URL; webhook: JSON to CONTINUUM_WEBHOOK_URL",
    )
    p.add_argument(
        "--group-id", default=None, help="consumer group (default continuum-alerts-TARGET)"
    )
    p.add_argument(
        "--max-attempts", type=int, default=8, help="tries before an alert is dead-lettered"
    )

    p = command(
        sub,
        "model-server",
        model_server,
        help="serve the dispatch model (trained at first run) on the seed's /api/v2/dispatch",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8600, help="port to listen on")
    p.add_argument("--version", default="gbm-v2", help="model version to serve (and train)")
    p.add_argument(
        "--model-dir", help="where models are kept (default CONTINUUM_HOME/models/dispatch)"
    )
    p.add_argument("--retrain", action="store_true", help="train again even if a model is kept")
    p.add_argument(
        "--register",
        action="store_true",
        help="register the version with its training metrics in the model registry (Kafka)",
    )

    p = command(
        sub,
        "judge",
        judge,
        help="score sampled chat turns with an LLM judge on the background lane (judge.scores)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address of /calibration and /metrics")
    p.add_argument("--port", type=int, default=8700, help="port of /calibration and /metrics")

    p = command(sub, "archive", archive, help="sink topics to daily Avro container files (history)")
    p.add_argument("--topics", default="chat.turns,chat.feedback", help="comma-separated topics")
    p.add_argument("--root", help="archive folder (default CONTINUUM_HOME/archive)")
