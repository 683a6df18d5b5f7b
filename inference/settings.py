"""Settings of the inference worker and gateway: the common ones plus engine and serving."""

from __future__ import annotations

from dataclasses import dataclass, field

from continuum.settings import Settings


@dataclass(frozen=True)
class InferenceSettings(Settings):
    engine: str = field(
        default="llamacpp",
        metadata={
            "help": "llamacpp (CPU, GGUF), vllm (GPU), or echo (no model: answers at once with "
            "the caller's words, to measure the Kafka path or load-test a deployment)"
        },
    )
    model_path: str = field(
        default="",
        metadata={
            "help": "GGUF file (llamacpp; empty = the bundled SmolLM2) or HF model folder (vllm)"
        },
    )
    model_version: str = field(
        default="", metadata={"help": "Model version reported in events (default: file name)"}
    )
    slots: int = field(
        default=1, metadata={"help": "llamacpp: contexts generating at once (CPU threads split)"}
    )
    n_ctx: int = field(default=2048, metadata={"help": "Context window in tokens"})
    threads: int = field(default=0, metadata={"help": "llamacpp: CPU threads (0 = all cores)"})
    max_inflight: int = field(
        default=0, metadata={"help": "Requests in flight per worker (0 = 2 x engine concurrency)"}
    )
    background_slots: int = field(
        default=0,
        metadata={
            "help": "Engine slots background requests (judge, evaluations) may hold at once "
            "(0 = all: a user request preempts one rather than wait)"
        },
    )
    serve_background: bool = field(
        default=True,
        metadata={"help": "Also answer the background lane (inference.requests.background)"},
    )
    max_num_seqs: int = field(
        default=64, metadata={"help": "vllm: sequences batched at once (echo: answers at once)"}
    )
    echo_token_ms: float = field(
        default=0.0, metadata={"help": "echo: milliseconds between its answer's words"}
    )
    gpu_memory_utilization: float = field(
        default=0.85, metadata={"help": "vllm: share of GPU memory for weights and KV cache"}
    )
    worker_id: str = field(
        default="",
        metadata={
            "help": "Worker id in heartbeats and answers (default: the host name, stable across "
            "restarts of one container; give each worker on a shared host its own)"
        },
    )
    group_id: str = field(
        default="continuum-inference",
        metadata={"help": "Consumer group of the workers (one group per model version)"},
    )
    emit_turns: bool = field(
        default=True, metadata={"help": "Also emit a ChatTurn measurement per answered request"}
    )
    answer_unrouted: bool = field(
        default=True, metadata={"help": "Answer requests that name no model version"}
    )
    drain_timeout_s: float = field(
        default=60.0, metadata={"help": "On shutdown, wait this long for in-flight requests"}
    )
    transactions: bool = field(
        default=True,
        metadata={
            "help": "Answers, their ChatTurns and the request offsets in one Kafka transaction "
            "(exactly once for read_committed readers)"
        },
    )
    transaction_interval_ms: float = field(
        default=50.0, metadata={"help": "Commit the open transaction this often (ms)"}
    )
    stream_chunk_ms: float = field(
        default=25.0,
        metadata={"help": "Streamed answers: publish the generated text at most this often (ms)"},
    )
    stream_chunk_tokens: int = field(
        default=16,
        metadata={"help": "Streamed answers: or as soon as this many tokens wait"},
    )
    heartbeat_s: float = field(
        default=5.0, metadata={"help": "Seconds between the worker's heartbeats"}
    )
    metrics_prefix: str = field(
        default="okla_llm", metadata={"help": "Prefix of the LLM metrics (the seed's names)"}
    )
    worker_host: str = field(
        default="0.0.0.0", metadata={"help": "Worker /metrics and /health address"}
    )
    worker_port: int = field(default=8001, metadata={"help": "Worker /metrics and /health port"})
    gateway_host: str = field(default="0.0.0.0", metadata={"help": "Gateway listen address"})
    gateway_port: int = field(default=8000, metadata={"help": "Gateway listen port"})
    reply_topic: str = field(
        default="inference.replies",
        metadata={
            "help": "Topic the gateway reads answers from (Continuum name or literal): the "
            "worker copies each answer there at once, outside the transaction that records it "
            "on inference.responses"
        },
    )
    gateway_api_keys: str = field(
        default="",
        metadata={
            "help": "gateway API keys, comma-separated, each 'key' or 'name:key'; "
            "*_FILE: one per line, re-read when the file changes; empty: the gateway is open",
            "secret": True,
        },
    )
    gateway_rate_limit_rpm: float = field(
        default=0.0,
        metadata={"help": "gateway requests per minute per API key (0: no limit; 429 beyond)"},
    )
    request_timeout_s: float = field(
        default=30.0, metadata={"help": "Deadline of a gateway call, seconds (seed: 30 s)"}
    )
