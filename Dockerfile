# One image for every Continuum Python service (simulator, streams worker, inference, jobs).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY continuum ./continuum
COPY schemas ./schemas
COPY producers ./producers
COPY streams ./streams
COPY inference ./inference
COPY jobs ./jobs
RUN pip install .
ENTRYPOINT ["continuum"]
CMD ["--help"]
