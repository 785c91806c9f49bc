# Two commands on a fresh machine: `make serve` (CPU Triton server) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test install mmpose-ref clean

install: $(STAMP)

# torch first: the pinned CPU wheel, so nothing later pulls a multi-GB CUDA build.
# rtmo-contract (server-client contract, no dependencies) before the two packages that depend on it.
$(STAMP): pyproject.toml client/pyproject.toml contract/pyproject.toml bench/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ./contract
	$(BIN)/python -m pip install --quiet -e ".[serve,dev,loadtest]"
	$(BIN)/python -m pip install --quiet -e "./client[cli,eval]"
	$(BIN)/python -m pip install --quiet -e ./bench
	touch $(STAMP)

serve: install
	$(BIN)/rtmo serve

# Parity tests build MMPose's own environment (about 1.5 minutes, once) and compare against it.
test: install
	bash loadtest/install_perf_analyzer.sh $(VENV) > /dev/null
	$(BIN)/python -m pytest

mmpose-ref:
	bash tests/mmpose_ref/setup_venv.sh

clean:
	rm -rf $(VENV) .mmpose-ref-venv .pytest_cache
