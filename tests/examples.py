"""One valid, hand-written event of every record type (shared by unit and integration tests)."""

from __future__ import annotations

import uuid
from typing import Any

T0 = 1_767_225_600_000


def _id(n: int) -> str:
    return str(uuid.UUID(int=n, version=4))


EXAMPLES: dict[str, dict[str, Any]] = {
    "ChatTurn": {
        "event_id": _id(1), "event_time": T0, "session_id": "s-1", "turn_index": 0,
        "model_version": "okla-v1.0", "experiment_id": "v1-vs-v2", "variant": "control",
        "user_query": "Klk, ¿tienen Toyota Corolla 2018?", "bot_response": "Sí, tenemos 3 disponibles.",
        "intent": "vehicle_search", "confidence": 0.91, "is_fallback": False, "latency_ms": 1234.5,
        "queue_wait_ms": 12.0, "time_to_first_token_ms": 180.0, "prompt_tokens": 310,
        "completion_tokens": 42, "lead_captured": False, "request_id": None,
        "metadata": {"channel": "whatsapp"},
    },
    "Feedback": {
        "event_id": _id(2), "event_time": T0 + 5, "session_id": "s-1", "turn_event_id": _id(1),
        "turn_index": 0, "model_version": "okla-v1.0", "experiment_id": "v1-vs-v2",
        "variant": "control", "rating": 2, "thumbs": "DOWN", "category": "wrong_price",
        "user_query": "¿Cuánto cuesta?", "bot_response": "RD$1", "intent": "price_inquiry",
        "correction": "El precio es RD$985,000.", "comment": None, "metadata": {},
    },
    "InferenceRequest": {
        "event_id": _id(3), "event_time": T0, "request_id": "req-1", "session_id": "s-1",
        "messages": [{"role": "system", "content": "Eres el asistente de OKLA.", "name": None},
                     {"role": "user", "content": "¿Financian yipetas?", "name": None}],
        "sampling": {"max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "stop": [], "seed": 1,
                     "presence_penalty": 0.0, "frequency_penalty": 0.0},
        "model": None, "experiment_id": None, "variant": None, "reply_topic": "inference.responses",
        "deadline": T0 + 30_000, "metadata": {},
    },
    "InferenceResponse": {
        "event_id": _id(4), "event_time": T0 + 900, "request_id": "req-1", "session_id": "s-1",
        "model_version": "smollm2-135m", "experiment_id": None, "variant": None,
        "text": "Sí, financiamos hasta 60 meses.", "finish_reason": "stop", "prompt_tokens": 30,
        "completion_tokens": 9, "queue_wait_ms": 3.0, "time_to_first_token_ms": 40.0,
        "total_ms": 900.0, "error": None, "worker_id": "w1",
    },
    "Prediction": {
        "event_id": _id(5), "event_time": T0, "prediction_id": "p-1", "model_name": "dispatch",
        "model_version": "xgb-v2", "phase": "ml-v2", "experiment_id": None, "entity_id": "d-9",
        "features": {"distance_km": 3.2, "hour": 14, "zone": "norte", "rain": None, "vip": True},
        "predicted_value": "driver-17", "confidence": 0.9, "fallback_used": False,
        "fallback_reason": None, "latency_ms": 12.0, "metadata": {},
    },
    "Outcome": {
        "event_id": _id(6), "event_time": T0 + 60_000, "prediction_id": "p-1",
        "model_version": "xgb-v2", "actual_value": "driver-17", "success": True, "metadata": {},
    },
    "DriftSignal": {
        "event_id": _id(7), "event_time": T0, "model_version": "okla-v1.0", "variant": None,
        "signal": "latency_increase", "detector": "window", "value": 3100.0, "baseline": 1800.0,
        "change": 0.72, "threshold": 0.5, "breached": True, "window_start": T0 - 3_600_000,
        "window_end": T0, "sample_size": 5000, "details": {"quantile": "0.95"},
    },
    "Alert": {
        "event_id": _id(8), "event_time": T0, "alert_id": "a-1", "alert_type": "DRIFT_DETECTED",
        "severity": "HIGH", "status": "OPEN", "dedup_key": "drift:okla-v1.0:latency_increase",
        "title": "p95 latency up 72% on okla-v1.0", "message": "", "source": "streams",
        "model_version": "okla-v1.0",
        "signals": [{"name": "latency_increase", "current": 3100.0, "baseline": 1800.0, "threshold": 0.5}],
        "recommendation": "Check the inference workers' load.", "details": {},
    },
    "RetrainTrigger": {
        "event_id": _id(9), "event_time": T0, "trigger_id": "okla-v1.0:FEEDBACK_COUNT",
        "model_version": "okla-v1.0", "reason": "FEEDBACK_COUNT", "value": 50.0, "threshold": 50.0,
        "details": {},
    },
    "Baseline": {
        "event_id": _id(10), "event_time": T0, "model_version": "okla-v1.0", "variant": None,
        "source": "replay", "window_start": T0 - 86_400_000, "window_end": T0, "sample_size": 10_000,
        "confidence_mean": 0.85, "confidence_variance": 0.01, "fallback_rate": 0.07,
        "latency_p50_ms": 1200.0, "latency_p95_ms": 2100.0, "latency_p99_ms": 2900.0,
        "tokens_mean": 380.0, "intent_distribution": {"greeting": 0.2, "vehicle_search": 0.8},
        "metrics": {"lead_rate": 0.06},
    },
    "Experiment": {
        "event_id": _id(11), "event_time": T0, "experiment_id": "v1-vs-v2", "name": "v1 vs v2",
        "control_version": "okla-v1.0", "treatment_version": "okla-v2.0", "traffic_split": 50.0,
        "strategy": "STICKY", "min_samples": 100, "alpha": 0.05, "status": "RUNNING", "winner": None,
        "description": None, "metadata": {},
    },
}
