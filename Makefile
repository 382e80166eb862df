# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv (pinned by constraints.txt, torch included) when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The CIFAR-10 sample beside this checkout, when there is one and CIFAR10_DIR is not set;
# otherwise torch_cnn.data uses its cache directory and downloads the dataset there.
CIFAR10_DIR ?= $(abspath $(wildcard ../shared/data/cifar-10-batches-py))
ifneq ($(CIFAR10_DIR),)
export CIFAR10_DIR
endif

.PHONY: demo test test-fast lint types pytest dist-check clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[keras,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest

test: lint types pytest

# The inner loop: lint, types and every test not marked slow (no subprocess trainings,
# torchrun or Keras trajectories). `make test` and CI run everything.
test-fast: lint types
	$(VENV)/bin/pytest -m "not slow"

# A release a stranger can install: wheel and sdist, installed in a fresh venv without
# TensorFlow, then a smoke test (import, CLI, converting a Keras file).
DIST_VENV := build/dist-venv
dist-check: $(STAMP)
	rm -rf dist $(DIST_VENV)
	$(PY) -m build --outdir dist . >/dev/null
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/pip install --quiet -c constraints.txt dist/*.whl
	cd build && ../$(DIST_VENV)/bin/python ../scripts/smoke_test.py ../parity_tests/zoo/residual_bn/model.keras

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
