# The two newcomer commands (README): `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-unit test-integration lint bench broker-jars clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP) broker-jars

# Resolves the Kafka broker's jars from Maven Central into ~/.m2 (cached) and its classpath.
broker-jars: $(STAMP)
	$(PY) -c "from continuum.localkafka import LocalKafka; from continuum.settings import Settings; LocalKafka.from_settings(Settings.from_env()).classpath()"

demo: setup
	$(VENV)/bin/continuum demo --drift-at 40 $(DEMO_ARGS)

test: setup lint
	$(PY) -m pytest tests/unit tests/integration -q $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test-integration: setup
	$(PY) -m pytest tests/integration -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) benchmarks/serde_produce.py
	$(PY) benchmarks/streams_throughput.py

clean:
	-$(VENV)/bin/continuum broker stop
	rm -rf $(VENV) .continuum .pytest_cache .hypothesis
