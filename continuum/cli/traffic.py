"""``continuum simulate``, ``simulate-predictions`` and ``demo``: flags become the simulators'
and the demo's config objects here; neither the demo nor the simulators see argparse."""

from __future__ import annotations

import argparse

from continuum.cli.common import Commands, comma_list, command
from continuum.demo.chat import DRIFT_KINDS, DriftInjection, SimulatorConfig
from continuum.settings import Settings


def chat_config(args: argparse.Namespace) -> SimulatorConfig:
    drift = None
    if args.drift_at is not None:
        drift = DriftInjection(
            at_s=args.drift_at,
            kinds=comma_list(args.drift) or DRIFT_KINDS,
            models=comma_list(args.drift_models),
        )
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


def add_chat_flags(p: argparse.ArgumentParser, turns: int) -> None:
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
        help="comma list of intent,latency,confidence,fallback,tokens,topic (default all; "
        "topic: users ask about electric cars in the same intents)",
    )
    p.add_argument(
        "--drift-models",
        default=None,
        metavar="VERSIONS",
        help="comma list of model versions that drift (default all)",
    )


def simulate(args: argparse.Namespace, settings: Settings) -> int:
    from continuum.demo.chat import run
    from producers.producer import EventProducer

    with EventProducer.from_settings(settings) as producer:
        sim = run(
            lambda schema, ev: producer.send(schema, ev, prepare=False),
            chat_config(args),
            realtime=args.realtime,
            live_time=args.realtime,
        )
    print(f"sent {sim.turns} chat turns and {sim.feedback} feedback events")
    return 0


def simulate_predictions(args: argparse.Namespace, settings: Settings) -> int:
    """Send a predictive model's predictions and outcomes (the dispatch seed's prediction log)."""
    from continuum.demo.dispatch import PredictionSimConfig, run_predictions
    from producers.producer import EventProducer

    kinds = comma_list(args.drift)
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


def simulate_dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatches through MLClient to a model server, following the live experiments."""
    import threading
    import time

    from continuum.cli.common import stop_on_signals
    from continuum.demo.dispatch import run_dispatch
    from inference.dispatch.rules import rules_answer
    from producers.assignment import VariantRouter
    from producers.experiments import ExperimentFollower
    from producers.mlclient import MLClient
    from producers.producer import EventProducer

    stop = threading.Event()
    stop_on_signals(stop)
    began = time.monotonic()
    router = VariantRouter()
    follower = ExperimentFollower(settings, router)
    follower.start()
    with (
        EventProducer.from_settings(settings) as producer,
        MLClient(args.model_url, fallback=rules_answer, producer=producer, router=router) as c,
    ):
        sent = run_dispatch(
            c,
            rate=args.rate,
            should_stop=lambda: (
                stop.is_set() or (args.seconds > 0 and time.monotonic() - began >= args.seconds)
            ),
            drift_at_s=args.drift_at,
        )
        status = c.status()
    follower.stop()
    print(
        f"sent {sent} dispatches through {args.model_url}; {status['events_dropped']} events "
        f"dropped; circuit {status['circuit']}"
    )
    return 0


def demo(args: argparse.Namespace, settings: Settings) -> int:
    from continuum.demo.run import DemoConfig, run_demo

    config = DemoConfig(
        seconds=args.seconds,
        keep_broker=args.keep_broker,
        chat_every_s=args.chat_every_s,
        ready_timeout_s=args.ready_timeout_s,
        model_down_at_s=args.model_down_at,
        model_down_s=args.model_down_s,
    )
    return run_demo(settings, config, chat_config(args))


def register(sub: Commands) -> None:
    p = command(
        sub, "simulate", simulate, help="send realistic chat traffic, with A/B split and drift"
    )
    add_chat_flags(p, turns=1000)
    p.add_argument("--realtime", action="store_true", help="pace at --rate per wall-clock second")

    p = command(
        sub,
        "simulate-predictions",
        simulate_predictions,
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

    p = command(
        sub,
        "simulate-dispatch",
        simulate_dispatch,
        help="send dispatches through MLClient to a model server (fallback, A/B, outcomes)",
    )
    p.add_argument(
        "--model-url",
        default="http://127.0.0.1:8600/api/v2/dispatch",
        help="the model server's base URL",
    )
    p.add_argument("--rate", type=float, default=10.0, help="dispatches per second")
    p.add_argument("--seconds", type=float, default=0.0, help="run this long (0 = until stopped)")
    p.add_argument(
        "--drift-at", type=float, default=None, help="move the traffic off the training data at S"
    )

    p = command(
        sub, "demo", demo, help="start the broker, create topics, simulate traffic and watch it"
    )
    add_chat_flags(p, turns=0)
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
    p.add_argument(
        "--model-down-at",
        type=float,
        default=None,
        metavar="S",
        help="kill the dispatch model server S seconds in: MLClient falls back to the rules and "
        "HIGH_FALLBACK_RATE is raised, then resolved once it is back",
    )
    p.add_argument(
        "--model-down-s", type=float, default=30.0, help="how long the model server stays down"
    )
