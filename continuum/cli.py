"""``continuum``: one command, many subcommands. Flags override environment variables; each flag's
help names its variable. Heavy packages are imported only by the subcommand that needs them."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from continuum.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
S = TypeVar("S", bound=Settings)


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection (flags override the environment)")
    for f in fields(Settings):
        if f.metadata.get("secret") or f.metadata.get("flag") is False:
            continue  # secrets come from the environment (or files) only, never from argv
        flag = "--" + f.name.replace("_", "-")
        g.add_argument(
            flag,
            dest=f"setting_{f.name}",
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata.get('help', '')} [env {Settings.env_name(f.name)}, "
            f"default {f.default}]",
        )


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for f in fields(Settings):
        raw = getattr(args, f"setting_{f.name}", None)
        if raw is not None:
            overrides[f.name] = Settings._coerce(f.type, raw)
    settings = Settings.from_env(**overrides)
    # A broker on a non-default port implies the bootstrap address unless given explicitly.
    if "kafka_port" in overrides and "bootstrap_servers" not in overrides:
        settings = settings.with_(bootstrap_servers=f"127.0.0.1:{settings.kafka_port}")
    return settings


# -- broker ----------------------------------------------------------------------------------


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from continuum.localkafka import LocalCluster, LocalKafka

    size = args.brokers if args.brokers > 1 else LocalCluster.saved_size(settings.home)
    if size > 1 and not (args.action == "start" and args.brokers == 1):
        cluster = LocalCluster.from_settings(settings, size)
        if args.action == "start":
            print(f"Kafka cluster of {cluster.size} nodes (KRaft) at {cluster.start()}")
        elif args.action == "stop":
            print("stopped" if cluster.stop() else "not running")
        elif args.action == "reset":
            cluster.stop()
            shutil.rmtree(cluster.cluster_id_file.parent, ignore_errors=True)
            print(f"stopped and removed {cluster.cluster_id_file.parent}")
        else:
            print(json.dumps(cluster.status(), indent=2))
        return 0
    kafka = LocalKafka.from_settings(settings)
    kafka.secure_port = kafka.configured_secure_port()
    if args.action == "start" and (args.secure or args.secure_port):
        kafka.secure_port = args.secure_port or kafka.secure_port or settings.kafka_port + 2
    if args.action == "start":
        bootstrap = kafka.start()
        print(
            f"Kafka {kafka.status()['kafka_version']} (KRaft) running at {bootstrap}, data in {kafka.data_dir}"
        )
        if kafka.secure_port:
            print(f"SASL_SSL listener at {kafka.secure_bootstrap}; a service connects with:")
            for name, value in kafka.client_env().items():
                print(f"  export {name}={value}")
    elif args.action == "stop":
        print("stopped" if kafka.stop() else "not running")
    elif args.action == "reset":
        kafka.reset()
        print(f"stopped and removed {kafka.data_dir}")
    else:
        print(json.dumps(kafka.status(), indent=2))
        return 0 if kafka.running() else 3
    return 0


# -- topics ----------------------------------------------------------------------------------


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
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
            status = f"{st.partitions} partitions" if st.exists else "MISSING"
            cfg = ", ".join(f"{k}={v}" for k, v in sorted(st.config.items()))
            print(
                f"{st.name}: {status}; {cfg}\n    record: {spec.schema or 'raw bytes + reason headers'}; "
                f"key: {spec.key_field or '-'}; {spec.doc}"
            )
    return 0


# -- emit ------------------------------------------------------------------------------------


def cmd_emit(args: argparse.Namespace, settings: Settings) -> int:
    from producers.producer import EventProducer
    from schemas.errors import EventValidationError

    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    rejects = open(args.rejects, "w", encoding="utf-8") if args.rejects else None  # noqa: SIM115
    sent = bad = 0
    with EventProducer.from_settings(settings) as producer:
        for lineno, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                schema = args.type or obj.pop("_type", None)
                if not schema:
                    raise ValueError('no record type: pass --type or add "_type" to each line')
                producer.send(schema, obj)
                sent += 1
            except (ValueError, KeyError, EventValidationError) as exc:
                bad += 1
                msg = exc.args[0] if isinstance(exc, KeyError) else str(exc)
                print(f"{args.file}:{lineno}: {msg}", file=sys.stderr)
                if rejects:
                    rejects.write(
                        json.dumps(
                            {"line": lineno, "error": msg, "input": line.rstrip("\n")},
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
    print(f"sent {sent} event(s), rejected {bad}")
    return 2 if bad else 0


# -- simulate --------------------------------------------------------------------------------


def _kinds(text: str | None) -> tuple[str, ...]:
    """A ``--drift`` comma list (empty when not given)."""
    return tuple(k.strip() for k in (text or "").split(",") if k.strip())


def _sim_config(args: argparse.Namespace) -> Any:
    from producers.simulator import DRIFT_KINDS, DriftInjection, SimulatorConfig

    drift = None
    if args.drift_at is not None:
        kinds = _kinds(args.drift) or DRIFT_KINDS
        models = tuple(m for m in (args.drift_models or "").split(",") if m)
        drift = DriftInjection(at_s=args.drift_at, kinds=kinds, models=models)
    ab = not args.no_ab
    return SimulatorConfig(
        seed=args.seed,
        sessions=args.sessions,
        rate=args.rate,
        turns=args.turns,
        treatment_version=args.treatment if ab else None,
        control_version=args.control,
        experiment_id=args.experiment if ab else None,
        treatment_share=args.split / 100.0,
        feedback_probability=args.feedback,
        drift=drift,
    )


def _add_sim_flags(p: argparse.ArgumentParser, turns: int) -> None:
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same events)")
    p.add_argument("--turns", type=int, default=turns, help="chat turns to send (0 = endless)")
    p.add_argument("--rate", type=float, default=50.0, help="chat turns per second")
    p.add_argument("--sessions", type=int, default=200, help="concurrent sessions")
    p.add_argument("--feedback", type=float, default=0.3, help="probability a turn gets feedback")
    p.add_argument("--control", default="okla-v1.0", help="control model version")
    p.add_argument("--treatment", default="okla-v2.0", help="treatment model version")
    p.add_argument("--experiment", default="v1-vs-v2", help="A/B experiment id")
    p.add_argument("--split", type=float, default=50.0, help="percent of sessions on the treatment")
    p.add_argument("--no-ab", action="store_true", help="no A/B test: every turn from --control")
    p.add_argument(
        "--drift-at",
        type=float,
        default=None,
        metavar="SECONDS",
        help="inject drift this many simulated seconds in",
    )
    p.add_argument(
        "--drift",
        default=None,
        metavar="KINDS",
        help="comma list of intent,latency,confidence,fallback,tokens (default all)",
    )
    p.add_argument(
        "--drift-models",
        default=None,
        metavar="VERSIONS",
        help="comma list of model versions that drift (default all)",
    )


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from producers.producer import EventProducer
    from producers.simulator import run

    config = _sim_config(args)
    with EventProducer.from_settings(settings) as producer:
        sim = run(
            lambda schema, ev: producer.send(schema, ev, prepare=False),
            config,
            realtime=args.realtime,
            live_time=args.realtime,
        )
    print(f"sent {sim.turns} chat turns and {sim.feedback} feedback events")
    return 0


def cmd_simulate_predictions(args: argparse.Namespace, settings: Settings) -> int:
    """Send a predictive model's predictions and outcomes (the dispatch seed's prediction log)."""
    from producers.producer import EventProducer
    from producers.simulator import PredictionSimConfig, run_predictions

    kinds = _kinds(args.drift)
    config = PredictionSimConfig(
        seed=args.seed,
        rate=args.rate,
        predictions=args.predictions,
        model_version=args.model_version,
        accuracy=args.accuracy,
        drift_at_s=args.drift_at,
        experiment_id=args.experiment,
        **({"drift": kinds} if kinds else {}),
    )
    with EventProducer.from_settings(settings) as producer:
        sim = run_predictions(
            lambda schema, ev: producer.send(schema, ev, prepare=False),
            config,
            realtime=args.realtime,
            live_time=args.realtime,
        )
    print(f"sent {sim.predictions} predictions and {sim.outcomes} outcomes")
    return 0


# -- demo ------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from continuum.demo import run_demo

    return run_demo(settings, args, _sim_config(args))


def cmd_experiments(args: argparse.Namespace, settings: Settings) -> int:
    """Create, stop or conclude an A/B experiment on the compacted experiments topic."""
    from producers.assignment import STRATEGIES
    from producers.experiments import experiment_event
    from producers.producer import EventProducer

    missing = [f for f in ("control", "treatment") if not getattr(args, f)]
    if missing:
        raise ValueError(f"experiments {args.action} needs --{' and --'.join(missing)}")
    if args.strategy.upper() not in STRATEGIES:
        raise ValueError(
            f"--strategy must be one of {', '.join(STRATEGIES)}, got {args.strategy!r}"
        )
    status = {"create": "RUNNING", "stop": "STOPPED", "conclude": "CONCLUDED"}[args.action]
    event = experiment_event(
        args.experiment_id,
        args.control,
        args.treatment,
        split_percent=args.split,
        strategy=args.strategy,
        status=status,
        min_samples=args.min_samples,
        alpha=args.alpha,
        winner=args.winner,
        name=args.name,
        description=args.description,
    )
    with EventProducer.from_settings(settings) as producer:
        ev = producer.send("Experiment", event)
    print(json.dumps(ev, ensure_ascii=False, indent=2))
    return 0


def _add_service_flags(p: argparse.ArgumentParser, cls: type[Settings]) -> None:
    """One flag per field a service's settings add to the common ones (``svc_`` dests)."""
    common = {g.name for g in fields(Settings)}
    for f in fields(cls):
        if f.name in common:
            continue
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f"svc_{f.name}",
            default=None,
            help=f"{f.metadata.get('help', '')} [env {Settings.env_name(f.name)}, default {f.default}]",
        )


def _service_settings(args: argparse.Namespace, settings: Settings, cls: type[S]) -> S:
    types = {f.name: f.type for f in fields(cls)}
    overrides = {
        k.removeprefix("svc_"): Settings._coerce(types[k.removeprefix("svc_")], v)
        for k, v in vars(args).items()
        if k.startswith("svc_") and v is not None
    }
    base = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    return cls.from_env(**{**base, **overrides})


def cmd_streams(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import run_worker
    from streams.settings import StreamsSettings

    run_worker(_service_settings(args, settings, StreamsSettings), args.loglevel)
    return 0


def cmd_infer(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from inference.settings import InferenceSettings

    s = _service_settings(args, settings, InferenceSettings)
    logging.getLogger("inference").setLevel(logging.INFO)
    if args.action == "worker":
        from inference.service import serve_worker

        asyncio.run(serve_worker(s))
    elif args.action == "gateway":
        from inference.service import serve_gateway

        asyncio.run(serve_gateway(s))
    elif args.action == "bench":
        from inference.bench import run_bench

        report = asyncio.run(
            run_bench(
                s,
                url=args.url,
                requests=args.requests,
                concurrency=args.concurrency,
                max_tokens=args.max_tokens,
            )
        )
        print(json.dumps(report, indent=2))
    elif args.action == "export-hf":
        from inference.export import export_hf

        out = export_hf(s.model_path or None, args.out)
        print(f"wrote a Hugging Face model folder for vLLM to {out}")
    return 0


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.alert_consumer import AlertDelivery, Target
    from jobs.notify import RetryPolicy

    url = settings.slack_webhook_url if args.target == "slack" else settings.webhook_url
    delivery = AlertDelivery(
        settings,
        Target.of(args.target, url),
        group_id=args.group_id,
        policy=RetryPolicy(max_attempts=args.max_attempts),
    )
    _stop_on_signals(delivery.stop_event)
    logging.getLogger("jobs").setLevel(logging.INFO)
    delivery.run()
    print(
        f"posted {delivery.posted}, skipped {delivery.skipped} already delivered, "
        f"dead-lettered {delivery.dead_lettered}"
    )
    return 0


def _time_ms(raw: str | None) -> int | None:
    """ISO-8601 (UTC if no zone) or epoch milliseconds."""
    if raw is None:
        return None
    if raw.isdigit():
        return int(raw)
    from datetime import UTC, datetime

    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"time {raw!r}: expected ISO-8601 like 2026-01-01T00:00 or epoch ms"
        ) from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def _stop_on_signals(event: Any) -> None:
    """SIGINT/SIGTERM set ``event`` (a threading.Event): the loop finishes its batch and exits."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: event.set())


def cmd_archive(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.archive import ArchiveSink

    sink = ArchiveSink(settings, args.topics.split(","), root=args.root and Path(args.root))
    _stop_on_signals(sink.stop_event)
    print(f"archiving {args.topics} to {sink.root} (Ctrl-C to stop)")
    sink.run()
    print(f"archived {sink.archived} records")
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import Progress

    from jobs.replay import BaselineReplay, ReplaySpec

    spec = ReplaySpec(
        args.model_version,
        _time_ms(args.start),
        _time_ms(args.end),
        args.variant,
        kind="predictions" if args.predictions else "turns",
    )
    checkpoint = (
        Path(args.checkpoint)
        if args.checkpoint
        else (settings.home / f"replay-{args.model_version}.checkpoint.json")
    )
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with Progress(transient=True) as bar:
        task = bar.add_task(f"replaying {args.model_version}", total=None)
        replay = BaselineReplay(
            spec,
            checkpoint=checkpoint,
            progress=lambda n, total: bar.update(task, completed=n, total=total),
            max_lateness_s=args.max_lateness_s,
        )
        if args.from_archive:
            baseline = replay.from_archive(Path(args.from_archive))
        else:
            baseline = replay.from_kafka(settings)
    text = json.dumps(baseline, indent=2, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    if args.publish:
        from producers.producer import EventProducer

        with EventProducer.from_settings(settings) as p:
            p.send("Baseline", baseline)
        print(
            f"published to {settings.topic_prefix}baselines: {baseline['sample_size']} {spec.kind}",
            file=sys.stderr,
        )
    return 0


# -- offline loop: evaluation, feedback, retraining dataset, model registry -------------------


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.evaluate import EvalOptions, evaluate
    from jobs.quality import Thresholds

    opts = EvalOptions(
        server_url=args.server_url,
        model=args.model,
        concurrency=args.concurrency,
        timeout_s=args.timeout_s,
        max_tokens=args.max_tokens,
        skip_intent=args.skip_intent,
        skip_safety=args.skip_safety,
        skip_naturalness=args.skip_naturalness,
        skip_lead=args.skip_lead,
        thresholds=Thresholds(
            intent_accuracy=args.min_intent_accuracy, latency_p95_ms=args.max_p95_ms
        ),
    )
    report = evaluate(Path(args.test_data), opts, Path(args.output_dir), show_progress=True)
    s = report["summary"]
    for name, c in s["checks"].items():
        print(
            f"{name:16} {c['value']!s:>24}  threshold {c['threshold']:<8} "
            f"{'pass' if c['passed'] else 'FAIL'}"
        )
    for line in report["invalid_lines"]:
        print(f"invalid test-set line: {line}", file=sys.stderr)
    print(f"verdict: {'PASS' if s['passed'] else 'FAIL'}; report {report['event']['report_path']}")
    if args.publish:
        from producers.producer import EventProducer

        with EventProducer.from_settings(settings) as p:
            p.send("EvaluationResult", report["event"])
        print(f"published {report['evaluation_id']} to {settings.topic_prefix}evaluations")
    return 0 if s["passed"] else 3


def _feedback_records(args: argparse.Namespace, settings: Settings) -> list[dict[str, Any]]:
    if args.data_dir:
        from jobs.feedback import from_seed_jsonl

        files = sorted(Path(args.data_dir).glob("*.jsonl"))
        if not files:
            raise ValueError(f"no .jsonl files in {args.data_dir}")
        return list(from_seed_jsonl(files))
    if args.from_archive:
        from jobs.archive import archive_files, read_archive

        files = archive_files(Path(args.from_archive), "chat.feedback")
        if not files:
            raise ValueError(f"no chat.feedback archive files under {args.from_archive}")
        return list(read_archive(files))
    from jobs.topicread import read_to_end

    return list(read_to_end(settings, "chat.feedback"))


def cmd_feedback(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.dataset import write_jsonl
    from jobs.feedback import analyze, report_markdown, training_pairs

    records = _feedback_records(args, settings)
    if args.model_version:
        records = [r for r in records if r.get("model_version") == args.model_version]
    if args.action == "analyze":
        print(json.dumps(analyze(records), indent=2, ensure_ascii=False))
    elif args.action == "report":
        text = report_markdown(analyze(records))
        if args.output_dir:
            out = Path(args.output_dir) / "feedback_report.md"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            print(f"wrote {out}")
        else:
            print(text)
    else:
        pairs, skipped = training_pairs(records, args.min_rating)
        out = Path(args.output_dir or ".") / "feedback_training.jsonl"
        write_jsonl(out, pairs)
        print(f"exported {len(pairs)} training pairs to {out}")
        for reason, n in skipped.most_common():
            print(f"  left out {n}: {reason}")
    return 0


def cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from jobs import dataset as ds

    if args.action == "collect":
        from jobs.feedback import training_pairs

        pairs, skipped = training_pairs(_feedback_records(args, settings), args.min_rating)
        conversations: list[dict[str, Any]] = []
        for path in args.conversations or []:
            recs, errors = ds.read_jsonl(Path(path))
            for e in errors:
                print(f"unreadable: {e}", file=sys.stderr)
            conversations += recs
        out = Path(args.output_dir) / "combined.jsonl"
        n = ds.write_jsonl(out, pairs + conversations)
        print(
            f"collected {n} records ({len(pairs)} from feedback, {len(conversations)} "
            f"conversations) into {out}"
        )
        for reason, k in skipped.most_common():
            print(f"  feedback left out {k}: {reason}")
        return 0
    if args.action == "prepare":
        new, errors = ds.read_jsonl(Path(args.new_data))
        original, errors2 = ds.read_jsonl(Path(args.original_data))
        new_clean, new_acc = ds.clean(new)
        orig_clean, orig_acc = ds.clean(original)
        merged, mix = ds.merge(new_clean, orig_clean, args.original_ratio, args.seed)
        merged, cross_duplicates = ds.dedupe(merged)  # new and original may repeat each other
        splits = ds.split(merged, (args.train, args.eval, args.test), args.seed)
        out = Path(args.output_dir)
        for name, recs in splits.items():
            ds.write_jsonl(out / f"{name}.jsonl", recs)
        manifest = {
            "unreadable_lines": errors + errors2,
            "new": new_acc,
            "original": orig_acc,
            "merge": mix,
            "cross_duplicates": cross_duplicates,
            "splits": {k: len(v) for k, v in splits.items()},
            "seed": args.seed,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        print(json.dumps({k: manifest[k] for k in ("merge", "splits")}, indent=2))
        invalid = new_acc["invalid"] + orig_acc["invalid"]
        if invalid or errors or errors2:
            print(
                f"{len(invalid)} invalid records and {len(errors) + len(errors2)} unreadable "
                f"lines left out: reasons in {out / 'manifest.json'}",
                file=sys.stderr,
            )
        return 0
    if args.action == "generate-script":
        script = ds.finetune_script(
            args.train_data,
            args.eval_data,
            base_model=args.base_model,
            output_dir=args.model_output,
            quant=args.quantization,
        )
        Path(args.output_script).write_text(script)
        print(f"wrote {args.output_script} (Unsloth + QLoRA, LoRA merge, GGUF {args.quantization})")
        return 0
    # check: the live retrain triggers, per model version, with the registry's states.
    from jobs.registry import load_registry
    from jobs.topicread import read_to_end

    triggers = list(read_to_end(settings, "retrain-triggers"))
    registry = load_registry(settings)
    if not triggers:
        print("no retrain trigger has fired")
        return 0
    for t in sorted(triggers, key=lambda t: (t["model_version"], t["reason"])):
        state = registry.state(t["model_version"]) or "unregistered"
        print(
            f"{t['model_version']} ({state}): {t['reason']} value {t['value']:.4g} "
            f"threshold {t['threshold']:.4g} at {t['event_time']}"
        )
    return 1 if args.exit_code else 0


def cmd_thresholds(args: argparse.Namespace, settings: Settings) -> int:
    """Per-model threshold overrides on the compacted ``thresholds`` topic (applied by running
    streams workers at their next window), and the names and seed defaults."""
    from jobs.replay import latest_baselines
    from jobs.topicread import latest_by
    from producers.producer import EventProducer
    from schemas.ids import stable_id
    from streams.logic.thresholds import (
        GLOBAL_ONLY,
        NAMES,
        WHERE,
        check,
        in_force,
        parse_assignments,
        seed_defaults,
    )
    from streams.settings import StreamsSettings

    if args.action == "calibrate":
        return _calibrate(args, settings)
    if args.action == "names":
        seed = seed_defaults()
        for name in NAMES:
            scope = "per worker" if name in GLOBAL_ONLY else "per model"
            print(f"{name:28} {seed[name]:>10g}  {scope:10} {', '.join(WHERE[name])}")
        return 0
    current = latest_by(settings, "thresholds", "model_version")
    if args.action == "list":
        for model, ev in sorted(current.items()):
            if ev.get("values"):
                print(f"{model:24} {json.dumps(ev['values'], sort_keys=True)}  ({ev['reason']})")
        return 0
    model = args.model_version
    if not model:
        raise ValueError(f"thresholds {args.action} needs a model version")
    have = dict((current.get(model) or {}).get("values") or {})
    if args.action == "get":
        env_settings = StreamsSettings.from_env()
        t, sources = in_force(env_settings.global_thresholds(), have)
        for name, value in sorted(t.values().items()):
            print(f"{name:28} {value:>10g}  {sources[name]}")
        return 0
    if args.action == "set":
        new = check(parse_assignments(args.values), per_model=True)
        if not new:
            raise ValueError("thresholds set needs name=value pairs")
        known = set(latest_by(settings, "model-registry", "model_version"))
        known |= set(latest_baselines(settings)) | set(current)
        if model not in known and not args.any_model:
            raise ValueError(
                f"unknown model {model!r}: not in the model registry nor on the baselines topic "
                f"(known: {', '.join(sorted(known)) or 'none'}); pass --any-model to set "
                "thresholds before its first traffic"
            )
        values = check({**have, **new}, per_model=True)
    else:  # unset
        names = [n.strip() for item in args.values for n in item.split(",") if n.strip()]
        missing = [n for n in names if n not in have]
        if not names or missing:
            raise ValueError(
                f"thresholds unset needs names set for {model}; not set: "
                f"{', '.join(missing) or '(none given)'}; set: {', '.join(sorted(have)) or 'none'}"
            )
        values = {k: v for k, v in have.items() if k not in names}
    now = int(time.time() * 1000)
    with EventProducer.from_settings(settings) as producer:
        ev = producer.send(
            "Thresholds",
            {
                "event_id": stable_id("thresholds", model, json.dumps(values, sort_keys=True), now),
                "event_time": now,
                "model_version": model,
                "values": values,
                "set_by": "cli",
                "reason": args.reason or "",
            },
        )
    print(f"{model}: {json.dumps(ev['values'], sort_keys=True)}")
    return 0


def _calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.calibrate import calibrate, history, stored_baseline
    from jobs.replay import ReplaySpec
    from producers.producer import EventProducer
    from schemas.ids import stable_id
    from streams.logic.calibration import SHIFT_SIGNAL
    from streams.logic.thresholds import check

    model = args.model_version
    if not model:
        raise ValueError("thresholds calibrate needs a model version")
    if args.target_per_week <= 0:
        raise ValueError(f"--target-per-week must be > 0, got {args.target_per_week}")
    spec = ReplaySpec(
        model,
        _time_ms(args.start) if args.start else None,
        _time_ms(args.end) if args.end else None,
    )
    archive = Path(args.from_archive) if args.from_archive else None
    turns = list(history(settings, spec, archive))
    report = calibrate(
        turns,
        window_ms=int(args.window_s * 1000),
        hop_ms=int(args.hop_s * 1000),
        target_per_week=args.target_per_week,
        freeze_after=args.freeze_after,
        baseline=stored_baseline(settings, model) if args.stored_baseline else None,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        weeks = report["span_ms"] / (7 * 86_400_000)
        print(
            f"{model}: {report['turns']} turns, {report['windows']} windows over {weeks:.2f} "
            f"weeks; target {args.target_per_week:g} false alarm(s) a week"
        )
        seed_delay, tuned_delay = report["delay_ms"]["seed"], report["delay_ms"]["proposed"]
        shift_of = {v: k for k, v in SHIFT_SIGNAL.items()}
        for p in report["proposals"]:
            shift = shift_of.get(p["signal"])
            delays = ""
            if shift:
                fmt = lambda ms: "missed" if ms is None else f"{ms / 60_000:.0f} min"  # noqa: E731
                delays = f"  {shift} shift found: seed {fmt(seed_delay[shift])}, proposed {fmt(tuned_delay[shift])}"
            proposed = "n/a" if p["proposed"] is None else f"{p['proposed']:g}"
            print(
                f"{p['threshold']:28} seed {p['seed']:<8g} proposed {proposed:<8} "
                f"({p['exceedances']}/{p['windows']} windows over it){delays}"
            )
    if args.write:
        values = check(
            {
                p["threshold"]: p["proposed"]
                for p in report["proposals"]
                if p["proposed"] is not None
            },
            per_model=True,
        )
        now = int(time.time() * 1000)
        with EventProducer.from_settings(settings) as producer:
            producer.send(
                "Thresholds",
                {
                    "event_id": stable_id(
                        "thresholds", model, json.dumps(values, sort_keys=True), now
                    ),
                    "event_time": now,
                    "model_version": model,
                    "values": values,
                    "set_by": "calibration",
                    "reason": f"calibrated on {report['windows']} windows for "
                    f"{args.target_per_week:g} false alarm(s) a week",
                },
            )
        print(f"written to the thresholds topic for {model}")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.registry import inherited_baseline, load_registry
    from producers.producer import EventProducer

    registry = load_registry(settings)
    now = int(time.time() * 1000)
    if args.action == "list":
        if not registry.versions:
            print("no model version registered")
        for v in sorted(registry.versions.values(), key=lambda v: v["event_time"]):
            print(f"{v['model_version']:24} {v['state']:10} {v.get('reason') or ''}")
        return 0
    if not args.model_version:
        raise ValueError(f"models {args.action} needs a model version")
    if args.action == "register":
        events = [
            registry.register(
                args.model_version,
                now,
                trained_at=_time_ms(args.trained_at) if args.trained_at else now,
                artifact_uri=args.artifact,
                dataset=args.dataset,
            )
        ]
    elif args.action == "retire":
        events = [registry.retire(args.model_version, now, args.reason or "retired by an operator")]
    else:
        from jobs.replay import latest_baselines
        from jobs.topicread import read_to_end

        baselines = latest_baselines(settings)
        events = registry.promote(
            args.model_version,
            now,
            evaluations=read_to_end(settings, "evaluations"),
            experiments=read_to_end(settings, "experiments"),
            baselines=baselines,
            reason=args.reason or "",
            allow_partial=args.allow_partial,
        )
    with EventProducer.from_settings(settings) as p:
        for ev in events:
            p.send("ModelVersion", ev)
            print(
                f"{ev['model_version']}: {ev['previous_state'] or '-'} -> {ev['state']} ({ev['reason']})"
            )
        if args.action == "promote":
            inherited = inherited_baseline(events[0], baselines, now)
            if inherited is not None:
                p.send("Baseline", inherited)
            print(
                f"drift of {args.model_version} is measured against the baseline of "
                f"{events[0]['baseline_model_version'] or '(frozen from its first turns)'}"
            )
    return 0


def _load_baseline(ref: str, settings: Settings) -> dict[str, Any]:
    path = Path(ref)
    if path.exists():
        return json.loads(path.read_text())
    from jobs.replay import latest_baselines

    found = latest_baselines(settings).get(ref)
    if found is None:
        raise ValueError(
            f"{ref!r} is neither a baseline JSON file nor a model version on the baselines topic"
        )
    return found


def cmd_baseline(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.table import Table

    from jobs.replay import compare_baselines

    a, b = _load_baseline(args.a, settings), _load_baseline(args.b, settings)
    rows = compare_baselines(a, b)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"baseline {args.a} → {args.b}")
    for col in ("statistic", "A", "B", "change"):
        table.add_column(col, justify="right" if col != "statistic" else "left")

    def fmt(v: Any) -> str:
        return "—" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    for r in rows:
        change = "" if r["change"] is None else f"{r['change']:+.1%}"
        table.add_row(r["stat"], fmt(r["a"]), fmt(r["b"]), change)
    Console().print(table)
    return 0


def _add_feedback_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data-dir", help="the seed's feedback_YYYYMMDD.jsonl files (default: the topic)"
    )
    src.add_argument("--from-archive", metavar="DIR", help="archive folder (default: the topic)")
    p.add_argument("--model-version", help="only feedback on this model version")


def build_parser(
    extra: Sequence[Callable[[argparse._SubParsersAction], None]] = (),
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="continuum",
        description="Continuum: event-driven continuous improvement for LLM products on Kafka.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("broker", help="run the local Apache Kafka (KRaft): one node, or a cluster")
    p.add_argument("action", choices=["start", "stop", "status", "reset"])
    p.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="nodes: 1 (default), or a local cluster for trying failover (3: replication 3, "
        "min.insync.replicas 2); stop and status act on both",
    )
    p.add_argument(
        "--secure",
        action="store_true",
        help="start: add a SASL_SSL listener (SCRAM-SHA-512, a CA made for this broker home) "
        "on --secure-port, next to the plain one; prints the settings a service needs for it",
    )
    p.add_argument(
        "--secure-port", type=int, default=0, help="port of the SASL_SSL listener (default 9094)"
    )
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_broker)

    p = sub.add_parser("topics", help="create, list or describe Continuum's topics")
    p.add_argument("action", choices=["create", "list", "describe"])
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_topics)

    p = sub.add_parser("emit", help="send events from a JSON-lines file (validated first)")
    p.add_argument("file", help='JSON-lines file, or "-" for standard input')
    p.add_argument("--type", help='record type of every line (else each line has "_type")')
    p.add_argument("--rejects", help="write rejected lines with their error here")
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_emit)

    p = sub.add_parser("simulate", help="send realistic chat traffic, with A/B split and drift")
    _add_sim_flags(p, turns=1000)
    p.add_argument("--realtime", action="store_true", help="pace at --rate per wall-clock second")
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser(
        "simulate-predictions",
        help="send a predictive model's predictions and outcomes (dispatch), with drift",
    )
    p.add_argument("--seed", type=int, default=11, help="random seed (same seed, same events)")
    p.add_argument("--predictions", type=int, default=1000, help="predictions (0 = endless)")
    p.add_argument("--rate", type=float, default=50.0, help="predictions per second")
    p.add_argument("--model-version", default="xgb-v2", help="model version that predicts")
    p.add_argument("--accuracy", type=float, default=0.9, help="share of successful outcomes")
    p.add_argument(
        "--experiment",
        default=None,
        metavar="ID",
        help="A/B test: half the predictions from rules-v1 (control), half from --model-version",
    )
    p.add_argument("--drift-at", type=float, default=None, metavar="SECONDS")
    p.add_argument(
        "--drift",
        default=None,
        metavar="KINDS",
        help="comma list of confidence,latency,fallback,accuracy,nulls,labels (default all)",
    )
    p.add_argument("--realtime", action="store_true", help="pace at --rate per wall-clock second")
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_simulate_predictions)

    p = sub.add_parser(
        "demo", help="start the broker, create topics, simulate traffic and watch it"
    )
    _add_sim_flags(p, turns=0)
    p.add_argument("--seconds", type=float, default=90.0, help="run this long (0 = until Ctrl-C)")
    p.add_argument("--keep-broker", action="store_true", help="leave the broker running afterwards")
    p.add_argument(
        "--chat-every-s",
        type=float,
        default=4.0,
        help="seconds between the real chats sent through the gateway to the LLM",
    )
    p.add_argument(
        "--ready-timeout-s",
        type=float,
        default=180.0,
        help="longest wait for every service and a first chat before the traffic starts",
    )
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("experiments", help="create, stop or conclude an A/B experiment")
    p.add_argument("action", choices=["create", "stop", "conclude"])
    p.add_argument("experiment_id", help="experiment id, e.g. v1-vs-v2")
    p.add_argument("--control", help="control model version (required)")
    p.add_argument("--treatment", help="treatment model version (required)")
    p.add_argument("--name", help="human name (default: the id)")
    p.add_argument("--split", type=float, default=50.0, help="percent of traffic on the treatment")
    p.add_argument(
        "--strategy",
        default="STICKY",
        help="RANDOM, ROUND_ROBIN, TIME_BASED, WEIGHT_BASED or STICKY",
    )
    p.add_argument("--min-samples", type=int, default=100, help="samples per arm before a decision")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level")
    p.add_argument("--description", help="what is being tested")
    p.add_argument("--winner", choices=["control", "treatment"], help="with conclude: the winner")
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_experiments)

    p = sub.add_parser(
        "streams", help="run the Faust analytics worker (drift, A/B, alerts, health)"
    )
    p.add_argument("action", choices=["worker"])
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    from streams.settings import StreamsSettings

    _add_service_flags(p, StreamsSettings)
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_streams)

    p = sub.add_parser(
        "infer", help="LLM inference over Kafka: worker, OpenAI-compatible gateway, bench"
    )
    p.add_argument(
        "action",
        choices=["worker", "gateway", "bench", "export-hf"],
        help="worker: answer inference.requests; gateway: POST /v1/chat/completions; "
        "bench: load a gateway; export-hf: GGUF -> Hugging Face folder for vLLM",
    )
    p.add_argument("--url", default="http://127.0.0.1:8000", help="bench: gateway base URL")
    p.add_argument("--requests", type=int, default=50, help="bench: number of calls")
    p.add_argument("--concurrency", type=int, default=8, help="bench: calls in flight")
    p.add_argument("--max-tokens", type=int, default=64, help="bench: tokens per answer")
    p.add_argument("--out", default=".continuum/models/smollm2-hf", help="export-hf: output folder")
    from inference.settings import InferenceSettings

    _add_service_flags(p, InferenceSettings)
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_infer)

    p = sub.add_parser(
        "alerts", help="deliver the alerts topic to Slack or a JSON webhook (never twice)"
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
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_alerts)

    p = sub.add_parser("archive", help="sink topics to daily Avro container files (history)")
    p.add_argument("--topics", default="chat.turns,chat.feedback", help="comma-separated topics")
    p.add_argument("--root", help="archive folder (default CONTINUUM_HOME/archive)")
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_archive)

    p = sub.add_parser("evaluate", help="run a test set against an OpenAI-compatible server")
    p.add_argument(
        "--test-data", required=True, help="JSONL of conversations with expected intents"
    )
    p.add_argument(
        "--server-url", default="http://127.0.0.1:8000", help="gateway or any OpenAI-compatible URL"
    )
    p.add_argument("--output-dir", default="results", help="where the JSON/Markdown reports go")
    p.add_argument("--model", help="model to ask for (default: the server's routing)")
    p.add_argument("--concurrency", type=int, default=4, help="calls at once")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per call")
    p.add_argument("--max-tokens", type=int, default=256, help="per answer")
    p.add_argument("--min-intent-accuracy", type=float, default=0.70, help="pass threshold")
    p.add_argument("--max-p95-ms", type=float, default=10_000.0, help="pass threshold (p95 below)")
    for dim in ("intent", "safety", "naturalness", "lead"):
        p.add_argument(f"--skip-{dim}", action="store_true", help=f"do not score {dim}")
    p.add_argument(
        "--no-publish",
        dest="publish",
        action="store_false",
        help="do not publish the EvaluationResult event",
    )
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("feedback", help="analyze, export or report user feedback")
    p.add_argument("action", choices=["analyze", "export", "report"])
    _add_feedback_source(p)
    p.add_argument("--output-dir", help="export/report: folder to write to")
    p.add_argument(
        "--min-rating", type=int, default=4, help="export: lowest rating kept without a correction"
    )
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_feedback)

    p = sub.add_parser(
        "retrain", help="collect, prepare and check retraining data; write the fine-tuning script"
    )
    p.add_argument("action", choices=["collect", "prepare", "check", "generate-script"])
    _add_feedback_source(p)
    p.add_argument("--min-rating", type=int, default=4, help="collect: lowest rating kept")
    p.add_argument(
        "--conversations", nargs="*", help="collect: JSONL files of chat-format conversations"
    )
    p.add_argument("--output-dir", default="retrain", help="collect/prepare: output folder")
    p.add_argument("--new-data", help="prepare: collected JSONL (combined.jsonl)")
    p.add_argument("--original-data", help="prepare: the original training JSONL")
    p.add_argument(
        "--original-ratio", type=float, default=0.7, help="prepare: share of original examples"
    )
    p.add_argument("--train", type=float, default=0.85, help="prepare: train share")
    p.add_argument("--eval", type=float, default=0.10, help="prepare: eval share")
    p.add_argument("--test", type=float, default=0.05, help="prepare: test share")
    p.add_argument("--seed", type=int, default=42, help="prepare: sampling and split seed")
    p.add_argument("--train-data", default="retrain/train.jsonl", help="generate-script")
    p.add_argument("--eval-data", default="retrain/eval.jsonl", help="generate-script")
    p.add_argument("--output-script", default="retrain_colab.py", help="generate-script")
    p.add_argument(
        "--base-model",
        default="unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
        help="generate-script",
    )
    p.add_argument(
        "--model-output", default="okla-retrained", help="generate-script: folder the script writes"
    )
    p.add_argument("--quantization", default="q4_k_m", help="generate-script: GGUF quantization")
    p.add_argument(
        "--exit-code", action="store_true", help="check: exit 1 when a trigger has fired"
    )
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_retrain)

    p = sub.add_parser(
        "thresholds",
        help="per-model thresholds, applied live: set, unset, get, list; names and defaults",
    )
    p.add_argument("action", choices=["set", "unset", "get", "list", "names", "calibrate"])
    p.add_argument("model_version", nargs="?", help="model version (set, unset, get, calibrate)")
    p.add_argument("values", nargs="*", help="set: name=value ...; unset: name ...")
    p.add_argument("--reason", help="why (recorded on the event)")
    p.add_argument(
        "--any-model",
        action="store_true",
        help="set: allow a model that is neither registered nor has a baseline yet",
    )
    p.add_argument("--from", dest="start", help="calibrate: first event time (ISO-8601 or ms)")
    p.add_argument("--to", dest="end", help="calibrate: last event time (ISO-8601 or ms)")
    p.add_argument("--from-archive", help="calibrate: read the archive folder instead of Kafka")
    p.add_argument(
        "--target-per-week",
        type=float,
        default=1.0,
        help="calibrate: false alarms per signal per week the history may show (default 1)",
    )
    p.add_argument("--window-s", type=float, default=3600, help="calibrate: window, seconds")
    p.add_argument("--hop-s", type=float, default=300, help="calibrate: hop, seconds")
    p.add_argument(
        "--freeze-after", type=int, default=1000, help="calibrate: turns a baseline is frozen from"
    )
    p.add_argument(
        "--stored-baseline",
        action="store_true",
        help="calibrate: compare with the model's baseline on the topic (default: its first turns)",
    )
    p.add_argument("--json", action="store_true", help="calibrate: print the report as JSON")
    p.add_argument("--write", action="store_true", help="calibrate: write the proposal")
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_thresholds)

    p = sub.add_parser("models", help="model registry: list, register, promote, retire")
    p.add_argument("action", choices=["list", "register", "promote", "retire"])
    p.add_argument("model_version", nargs="?", help="model version (all but list)")
    p.add_argument(
        "--trained-at", help="register: when training finished (ISO-8601 or epoch ms; default now)"
    )
    p.add_argument("--artifact", help="register: where the weights are")
    p.add_argument("--dataset", help="register: training dataset")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="promote: accept a passing evaluation that skipped some of the seed's dimensions "
        "(recorded in the promotion's reason)",
    )
    p.add_argument("--reason", help="why (recorded)")
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("replay", help="rebuild a baseline from history (Kafka or the archive)")
    p.add_argument("what", choices=["baseline"])
    p.add_argument("model_version", help="model version to rebuild the baseline of")
    p.add_argument("--start", help="first event time (ISO-8601 or epoch ms)")
    p.add_argument("--end", help="last event time, inclusive (ISO-8601 or epoch ms)")
    p.add_argument("--variant", help="only this experiment arm (a prediction's phase)")
    p.add_argument(
        "--predictions",
        action="store_true",
        help="a predictive model: read the predictions topic instead of chat.turns",
    )
    p.add_argument("--from-archive", metavar="DIR", help="read archive files instead of Kafka")
    p.add_argument(
        "--max-lateness-s", type=float, help="Kafka: how late events may arrive (bounds the end)"
    )
    p.add_argument(
        "--checkpoint", help="resume file (default CONTINUUM_HOME/replay-MODEL.checkpoint.json)"
    )
    p.add_argument("--out", help="write the baseline JSON here (default: print it)")
    p.add_argument(
        "--no-publish",
        dest="publish",
        action="store_false",
        help="do not publish to the compacted baselines topic",
    )
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser("baseline", help="compare two baselines (JSON files or model versions)")
    p.add_argument("action", choices=["compare"])
    p.add_argument("a", help="baseline JSON file or model version on the baselines topic")
    p.add_argument("b", help="baseline JSON file or model version on the baselines topic")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    _add_settings_flags(p)
    p.set_defaults(handler=cmd_baseline)

    for register in extra:
        register(sub)
    return parser


# Commands that do not connect to the configured Kafka (the demo runs its own local broker).
OFFLINE = frozenset({"broker", "demo", "evaluate", "baseline"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = _settings(args)
        if args.command not in OFFLINE:
            from continuum import kafka

            kafka.preflight(settings.kafka)  # bad credentials or TLS: one line, exit 1
        return int(args.handler(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error for the operator; -v for the traceback
        if args.verbose:
            raise
        print(f"continuum {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
