# `make demo` and `make test` work on a fresh machine: they create .venv, install the CPU
# torch wheel first (otherwise pip resolves a multi-GB CUDA build), then ragtune itself.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXTRAS ?= dev
# llama-cpp-python (the llm extra) compiles llama.cpp here. A native build (-march=native: AVX-512 and AMX
# on an Intel VM that advertises them) died with SIGILL on its first completion; build for AVX2 instead.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: demo test bench lint docs install clean image

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Re-installs only when pyproject.toml changes; otherwise this target is a no-op.
$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(PY)
	$(PIP) install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

# The demo runs prepare, train, evaluate and report: ragtune alone, no extras (no compiler, no Feast,
# no dev tools); `make test` installs the rest into the same .venv.
$(VENV)/.installed-demo: pyproject.toml | $(PY)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e .
	touch $@

demo: $(VENV)/.installed-demo
	HF_HUB_OFFLINE=1 $(VENV)/bin/ragtune demo

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --durations=30

# Updates the numbers in docs/benchmarks.md (about three hours on 2 cores; run it on a quiet machine). ONLY="mining scale" runs a subset.
bench: install
	HF_HUB_OFFLINE=1 $(PY) benchmarks/run_all.py $(if $(ONLY),--only $(ONLY))

# The training image, deploy/Dockerfile (IMAGE, BASE_IMAGE, VARIANT, PIP_CERT: see the script).
image:
	scripts/docker-build.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# docs/config.md from the typed config (tests/test_docs.py fails when it is stale).
docs: install
	$(PY) scripts/config_reference.py

clean:
	rm -rf $(VENV) runs .pytest_cache
