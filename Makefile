# `make test` and `make demo` set everything up on a fresh machine (idempotent, fast the second time).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nasdeploy-installed
# The torch/torchvision pair this workplace installs from local disk; other machines fetch it from PyPI.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= runs/demo

.PHONY: setup test test-all test-oldest demo zoo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[test,openvino,postgresql]'
	@touch $(STAMP)

# pytest exits 5 when it collects no test: that is not a failure of the suite. -rs lists every skipped test
# with its reason (no GPU, no TensorRT, no ../shared). With CI=true a missing ../shared fails the run.
# Two workers (one thread each, tests/conftest.py), each taking whole files (--dist loadfile), so that a file's
# module fixtures (a trained network, a tiny pipeline run) are built once; the heaviest files are scheduled first.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -rs --durations=15 -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

# The suite plus its extended tests (longer variants of covered scenarios: more zoo families and seeds, the
# supernet's learning run, AOTInductor's dynamic batches, ...): about twice as long.
test-all: setup
	NASDEPLOY_EXTENDED=1 $(PY) -m pytest -q -rs --durations=15 -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

# The suite on the oldest PyTorch nasdeploy claims (pyproject's torch range), in a venv of its own: 2.11 is the
# release GPU images ship. Downloads a CUDA build of PyTorch (about 3 GB with its NVIDIA libraries) once.
OLDEST_VENV ?= .venv-oldest
OLDEST_TORCH ?= torch==2.11.0 torchvision==0.26.0
test-oldest:
	$(MAKE) test VENV=$(OLDEST_VENV) TORCH_PIN='$(OLDEST_TORCH)'

demo: setup
	$(PY) -m nasdeploy pipeline --out $(DEMO_OUT)

zoo: setup
	$(PY) -m nasdeploy zoo

clean:
	rm -rf runs .pytest_cache
