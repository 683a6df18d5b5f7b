"""Deterministic chat traffic for the car-marketplace chatbot: turns and feedback, an A/B split
between two model versions, and drift injected at a chosen moment.

Everything is drawn from one ``random.Random(seed)``, so the same config yields the same events
(ids included). Event times follow a virtual clock at ``rate`` events per second from
``start_ms``; :func:`run` can also pace sending in real time.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from producers.assignment import TREATMENT, StickyAssigner
from producers.experiments import experiment_event as build_experiment

# "topic": users start asking about something absent before (electric cars) in the same intents:
# the intent mix does not move, the words do (semantic drift).
DRIFT_KINDS = ("intent", "latency", "confidence", "fallback", "tokens", "topic")
DEFAULT_DRIFT = DRIFT_KINDS[:5]
NEW_TOPIC_QUERIES = (
    "¿Tienen carros eléctricos disponibles?",
    "¿Cuánto dura la batería de un {v} eléctrico?",
    "¿Dónde puedo cargar un vehículo eléctrico en Santo Domingo?",
    "¿Venden híbridos enchufables o solo eléctricos?",
    "¿Cuál es la autonomía real de un eléctrico en la ciudad?",
    "¿El eléctrico incluye el cargador para la casa?",
)


@dataclass(frozen=True)
class IntentProfile:
    queries: tuple[str, ...]
    responses: tuple[str, ...]
    confidence: float  # mean confidence for this intent
    completion_tokens: int
    lead_rate: float


VEHICLES = (
    "Toyota Corolla 2018",
    "Honda Civic 2020",
    "Hyundai Tucson 2019",
    "Kia Sportage 2021",
    "Toyota Hilux 2020",
    "Honda CR-V 2017",
    "Nissan Frontier 2019",
    "Mitsubishi Montero 2016",
)

INTENTS: dict[str, IntentProfile] = {
    "greeting": IntentProfile(
        (
            "Klk, buenas",
            "Hola, ¿cómo está la vaina?",
            "Buenas tardes, saludos",
            "Dimelo, ¿quién me atiende?",
        ),
        (
            "¡Saludos! Bienvenido a OKLA, ¿en qué te puedo ayudar hoy?",
            "¡Klk! Aquí estamos para ayudarte a encontrar tu vehículo.",
        ),
        0.95,
        25,
        0.0,
    ),
    "vehicle_search": IntentProfile(
        (
            "¿Tienen un {v} disponible?",
            "Busco una yipeta que no gaste mucho",
            "¿Qué carros tienen por menos de un millón?",
            "Ando buscando un {v}, ¿hay alguno en Santiago?",
        ),
        (
            "Sí, tenemos {v} disponible en nuestro inventario. ¿Quieres ver fotos?",
            "Tenemos varias opciones que te pueden servir, te muestro las más económicas.",
        ),
        0.88,
        70,
        0.03,
    ),
    "price_inquiry": IntentProfile(
        (
            "¿Cuánto cuesta el {v}?",
            "¿En cuánto me dejan el {v}?",
            "¿Ese precio es negociable?",
            "¿Cuál es el precio final con traspaso?",
        ),
        (
            "El {v} está en RD$1,250,000. El precio incluye traspaso.",
            "Ese vehículo tiene un precio de RD$985,000, con espacio para negociar.",
        ),
        0.86,
        60,
        0.05,
    ),
    "financing": IntentProfile(
        (
            "¿Me pueden financiar el {v}?",
            "¿Cuánto es el inicial?",
            "¿Trabajan con Banreservas?",
            "¿A cuántos meses es el financiamiento?",
        ),
        (
            "Sí, financiamos hasta 60 meses con un inicial desde 20%.",
            "Trabajamos con varios bancos; con tu cédula y una carta de trabajo te precalificamos.",
        ),
        0.84,
        80,
        0.10,
    ),
    "test_drive": IntentProfile(
        (
            "Quiero probar el {v}, ¿cuándo puedo pasar?",
            "¿Puedo ir a verlo el sábado?",
            "¿Dónde queda el dealer para ir a probarlo?",
        ),
        (
            "¡Claro! Podemos agendar la prueba para el sábado a las 10am. ¿Te funciona?",
            "Estamos en la Av. 27 de Febrero; te agendo la prueba de manejo.",
        ),
        0.87,
        55,
        0.25,
    ),
    "contact_lead": IntentProfile(
        (
            "Mi número es 809-555-{n}, llámenme",
            "Escríbanme al WhatsApp 829-555-{n}",
            "Quiero que un vendedor me contacte",
        ),
        (
            "¡Perfecto! Un asesor te contactará en breve.",
            "Anotado, te escribimos por WhatsApp hoy mismo.",
        ),
        0.90,
        35,
        0.75,
    ),
    "fallback": IntentProfile(
        (
            "¿Quién ganó el juego de pelota anoche?",
            "asdf qwer",
            "¿Me ayudas con la tarea de matemáticas?",
            "¿Venden pasajes a Miami?",
        ),
        (
            "Disculpa, no entendí bien. ¿Me puedes decir qué vehículo buscas?",
            "Solo puedo ayudarte con vehículos del marketplace OKLA.",
        ),
        0.35,
        30,
        0.0,
    ),
}

BASE_MIX: dict[str, float] = {
    "greeting": 0.15,
    "vehicle_search": 0.30,
    "price_inquiry": 0.20,
    "financing": 0.12,
    "test_drive": 0.08,
    "contact_lead": 0.07,
    "fallback": 0.08,
}
# After an intent-mix drift: financing questions surge and off-topic traffic grows.
DRIFTED_MIX: dict[str, float] = {
    "greeting": 0.05,
    "vehicle_search": 0.10,
    "price_inquiry": 0.08,
    "financing": 0.45,
    "test_drive": 0.04,
    "contact_lead": 0.03,
    "fallback": 0.25,
}


def experiment_event(
    experiment_id: str,
    control: str,
    treatment: str,
    treatment_share: float,
    strategy: str,
    start_ms: int,
    description: str,
) -> dict[str, Any]:
    """The ``Experiment`` a simulator announces its A/B test with (what ``continuum experiments
    create`` sends); its id is stable, so re-running a simulation updates the same experiment."""
    return build_experiment(
        experiment_id,
        control,
        treatment,
        split_percent=treatment_share * 100,
        strategy=strategy,
        description=description,
        metadata={"source": "simulator"},
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"continuum-sim/{experiment_id}")),
        event_time=start_ms,
    )


@dataclass(frozen=True)
class DriftInjection:
    """What changes, for which model versions (empty = all), from ``at_s`` simulated seconds on.
    ``intents`` and ``channels`` narrow the per-turn kinds (confidence, fallback, latency,
    tokens) to turns of those intents or channels (empty = all): a change with a known cause, for
    the attribution to find."""

    at_s: float
    kinds: tuple[str, ...] = DEFAULT_DRIFT
    models: tuple[str, ...] = ()
    intents: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    latency_factor: float = 2.5
    confidence_drop: float = 0.25
    fallback_spike: float = 0.20
    token_factor: float = 1.6
    intent_mix: dict[str, float] = field(default_factory=lambda: dict(DRIFTED_MIX))
    topic_share: float = 0.35  # of the drifting turns whose query is about the new topic
    topic_queries: tuple[str, ...] = NEW_TOPIC_QUERIES

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in DRIFT_KINDS]
        if bad:
            raise ValueError(
                f"unknown drift kind(s) {bad}; expected some of {', '.join(DRIFT_KINDS)}"
            )


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int = 7
    sessions: int = 200  # concurrent sessions in the pool
    rate: float = 50.0  # chat turns per simulated second
    turns: int = 1000  # chat turns to generate (0 = endless)
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    control_version: str = "okla-v1.0"
    treatment_version: str | None = "okla-v2.0"
    experiment_id: str | None = "v1-vs-v2"
    treatment_share: float = 0.5
    feedback_probability: float = 0.3
    treatment_satisfaction_lift: float = 0.08
    treatment_lead_lift: float = 0.03
    drift: DriftInjection | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0 turns per second, got {self.rate!r}")
        if self.sessions < 1:
            raise ValueError(f"sessions must be >= 1, got {self.sessions!r}")
        if not 0 <= self.feedback_probability <= 1:
            raise ValueError(
                f"feedback_probability must be in [0, 1], got {self.feedback_probability!r}"
            )


@dataclass
class _Session:
    session_id: str
    model_version: str
    variant: str | None
    turns: int = 0
    length: int = 4


class TrafficSimulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self._assigner = StickyAssigner(config.treatment_share, salt=config.experiment_id or "")
        self._pool: list[_Session] = []
        self._n_sessions = 0
        self.turns = 0
        self.feedback = 0

    # -- helpers -----------------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _new_session(self, now_ms: int) -> _Session:
        self._n_sessions += 1
        sid = f"s-{self.config.seed}-{self._n_sessions:07d}"
        cfg = self.config
        if cfg.treatment_version and cfg.experiment_id:
            arm = self._assigner.assign(sid, now_ms)
            version = cfg.treatment_version if arm == TREATMENT else cfg.control_version
            variant: str | None = arm
        else:
            version, variant = cfg.control_version, None
        return _Session(sid, version, variant, length=1 + int(self.rng.expovariate(1 / 4)))

    def _drifting(
        self, t_s: float, model: str, kind: str, intent: str | None = None, channel: str = ""
    ) -> bool:
        d = self.config.drift
        return (
            d is not None
            and t_s >= d.at_s
            and kind in d.kinds
            and (not d.models or model in d.models)
            and (intent is None or not d.intents or intent in d.intents)
            and (intent is None or not d.channels or channel in d.channels)
        )

    def _pick_intent(self, t_s: float, model: str, first: bool) -> str:
        if first and self.rng.random() < 0.6:
            return "greeting"
        drift = self.config.drift
        mix = drift.intent_mix if drift and self._drifting(t_s, model, "intent") else BASE_MIX
        names = list(mix)
        return self.rng.choices(names, weights=[mix[n] for n in names])[0]

    def _query(self, t_s: float, model: str, intent: str, channel: str, prof: IntentProfile) -> str:
        drift = self.config.drift
        if (
            drift is not None
            and intent != "greeting"
            and self._drifting(t_s, model, "topic", intent, channel)
            and self.rng.random() < drift.topic_share
        ):
            return self._fill(self.rng.choice(drift.topic_queries))
        return self._fill(self.rng.choice(prof.queries))

    def _fill(self, template: str) -> str:
        return template.format(v=self.rng.choice(VEHICLES), n=f"{self.rng.randrange(10000):04d}")

    # -- generation --------------------------------------------------------------------------

    def experiment_event(self) -> dict[str, Any] | None:
        """The ``Experiment`` announcing the simulated A/B split (what ``continuum experiments
        create`` sends), or None when the simulator runs a single model."""
        cfg = self.config
        if not (cfg.treatment_version and cfg.experiment_id):
            return None
        return experiment_event(
            cfg.experiment_id,
            cfg.control_version,
            cfg.treatment_version,
            cfg.treatment_share,
            "STICKY",
            cfg.start_ms,
            "simulated A/B split",
        )

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(record type, event)`` pairs in event-time order."""
        cfg = self.config
        step_ms = 1000.0 / cfg.rate
        i = 0
        while cfg.turns == 0 or i < cfg.turns:
            now_ms = cfg.start_ms + int(i * step_ms)
            turn = self._turn(now_ms)
            yield "ChatTurn", turn
            if self.rng.random() < cfg.feedback_probability:
                yield (
                    "Feedback",
                    self._feedback(turn, now_ms + 1 + self.rng.randrange(int(step_ms) + 1)),
                )
            i += 1

    def _turn(self, now_ms: int) -> dict[str, Any]:
        cfg, rng = self.config, self.rng
        t_s = (now_ms - cfg.start_ms) / 1000
        if len(self._pool) < cfg.sessions or rng.random() < 0.05:
            sess = self._new_session(now_ms)
            if self._n_sessions <= cfg.sessions:
                # Traffic is observed mid-stream: the first pool holds conversations already under
                # way, so the first minutes are not all greetings (a biased frozen baseline).
                sess.turns = rng.randrange(sess.length)
            self._pool.append(sess)
        idx = rng.randrange(len(self._pool))
        sess = self._pool[idx]
        model = sess.model_version
        intent = self._pick_intent(t_s, model, sess.turns == 0)
        prof = INTENTS[intent]
        channel = rng.choice(("web", "whatsapp", "app"))

        conf = min(1.0, max(0.0, rng.gauss(prof.confidence, 0.06)))
        if self._drifting(t_s, model, "confidence", intent, channel):
            conf = max(0.0, conf - cfg.drift.confidence_drop)  # type: ignore[union-attr]
        fallback_p = 0.0 if intent != "fallback" else 0.9
        if self._drifting(t_s, model, "fallback", intent, channel):
            fallback_p = min(1.0, fallback_p + cfg.drift.fallback_spike)  # type: ignore[union-attr]
        is_fallback = rng.random() < fallback_p

        median = 1200.0 if sess.variant != TREATMENT else 1100.0
        latency = rng.lognormvariate(math.log(median), 0.35)
        if self._drifting(t_s, model, "latency", intent, channel):
            latency *= cfg.drift.latency_factor  # type: ignore[union-attr]
        queue_wait = min(latency * 0.1, rng.expovariate(1 / 40))
        ttft = queue_wait + rng.uniform(80, 250)

        prompt_tokens = int(max(20, rng.gauss(320 + 12 * sess.turns, 40)))
        completion_tokens = int(
            max(5, rng.gauss(prof.completion_tokens, prof.completion_tokens * 0.25))
        )
        if self._drifting(t_s, model, "tokens", intent, channel):
            completion_tokens = int(completion_tokens * cfg.drift.token_factor)  # type: ignore[union-attr]
            prompt_tokens = int(prompt_tokens * cfg.drift.token_factor)  # type: ignore[union-attr]

        lead_rate = prof.lead_rate + (cfg.treatment_lead_lift if sess.variant == TREATMENT else 0.0)
        event = {
            "event_id": self._uuid(),
            "event_time": now_ms,
            "session_id": sess.session_id,
            "turn_index": sess.turns,
            "model_version": model,
            "experiment_id": cfg.experiment_id if sess.variant else None,
            "variant": sess.variant,
            "user_query": self._query(t_s, model, intent, channel, prof),
            "bot_response": self._fill(
                rng.choice(INTENTS["fallback"].responses if is_fallback else prof.responses)
            ),
            "intent": intent,
            "confidence": round(conf, 4),
            "is_fallback": is_fallback,
            "latency_ms": round(latency, 2),
            "queue_wait_ms": round(queue_wait, 2),
            "time_to_first_token_ms": round(ttft, 2),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "lead_captured": rng.random() < lead_rate,
            "request_id": None,
            "metadata": {"channel": channel},
        }
        sess.turns += 1
        if sess.turns >= sess.length:
            self._pool.pop(idx)
        self.turns += 1
        return event

    def _feedback(self, turn: dict[str, Any], now_ms: int) -> dict[str, Any]:
        cfg, rng = self.config, self.rng
        p_good = 0.78 if not turn["is_fallback"] else 0.15
        if turn["variant"] == TREATMENT:
            p_good += cfg.treatment_satisfaction_lift
        if turn["latency_ms"] > 4000:
            p_good -= 0.3
        good = rng.random() < p_good
        if good:
            rating, category = rng.choice((4, 5, 5)), "good_response"
        else:
            rating = rng.choice((1, 2, 2, 3))
            if turn["is_fallback"]:
                category = rng.choice(("wrong_intent", "incomplete", "wrong_intent"))
            elif turn["latency_ms"] > 4000:
                category = "slow_response"
            else:
                category = rng.choice(
                    (
                        "wrong_intent",
                        "hallucination",
                        "incomplete",
                        "wrong_price",
                        "wrong_vehicle_info",
                        "too_formal",
                        "too_informal",
                        "wrong_language",
                        "other",
                    )
                )
        thumbs = None
        if rng.random() < 0.5:
            thumbs = "UP" if rating >= 4 else "DOWN"
        correction = None
        if rating <= 2 and rng.random() < 0.4:
            correction = (
                "Debió responder sobre "
                + turn["intent"].replace("_", " ")
                + " con datos del inventario."
            )
        self.feedback += 1
        return {
            "event_id": self._uuid(),
            "event_time": now_ms,
            "session_id": turn["session_id"],
            "turn_event_id": turn["event_id"],
            "turn_index": turn["turn_index"],
            "model_version": turn["model_version"],
            "experiment_id": turn["experiment_id"],
            "variant": turn["variant"],
            "rating": rating,
            "thumbs": thumbs,
            "category": category,
            "user_query": turn["user_query"],
            "bot_response": turn["bot_response"],
            "intent": turn["intent"],
            "correction": correction,
            "comment": None,
            "metadata": {},
        }


def run(
    send: Callable[[str, dict[str, Any]], Any],
    config: SimulatorConfig,
    *,
    realtime: bool = False,
    live_time: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[TrafficSimulator], None] | None = None,
) -> TrafficSimulator:
    """Feed the simulator's events to ``send``. With ``realtime`` sending is paced at
    ``config.rate`` turns per wall-clock second; with ``live_time`` event times are rebased to now
    (for a live demo) instead of the configured virtual start."""
    if live_time:
        config = replace(config, start_ms=int(time.time() * 1000))
    sim = TrafficSimulator(config)
    started = time.monotonic()
    if (experiment := sim.experiment_event()) is not None:
        send("Experiment", experiment)
    for schema, event in sim.events():
        if should_stop():
            break
        if realtime:
            due = started + sim.turns / config.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        send(schema, event)
        if on_progress is not None and sim.turns % 100 == 0 and schema == "ChatTurn":
            on_progress(sim)
    return sim
