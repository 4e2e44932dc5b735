# Two entry points, both self-contained on a fresh machine:
#   make demo   create .venv if needed, install, generate the phantom and quantify it
#   make test   install with the test extras, lint (ruff, mypy), run the test suite
#   (make test-fast leaves out the end-to-end cases marked slow)
#   make test-hpc   as root: a single-node SLURM cluster on localhost runs
#                   bids-perfusion-slurm on a 2-subject phantom (.ci/test-hpc, docs/hpc.md)
#   make test-container   as root: builds the CPU image with podman, runs the demo in it
#                   and compares its maps with the virtualenv's (.ci/test-container)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet -c constraints.txt
DEMO_DIR ?= demo_output
export NIPYPE_NO_ET := 1

.PHONY: demo test test-fast test-hpc test-container install install-test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(PIP) -e .

install-test: $(BIN)/python
	$(PIP) -e '.[test]' jsonschema
	$(BIN)/python -m pip install --quiet --no-deps asldro  # pins an old numpy: no deps

demo: install
	$(BIN)/bids-perfusion-phantom $(DEMO_DIR)/phantom --n-subjects 4 --seed 42 --overwrite
	$(BIN)/bids-perfusion $(DEMO_DIR)/phantom $(DEMO_DIR)/derivatives participant \
		--dsc-methods ssvd,csvd,osvd,tikhonov --simulate-dose 0.5 -w $(DEMO_DIR)/work

lint: install-test  # ruff everywhere; mypy on the typed numeric cores (setup.cfg [mypy])
	$(BIN)/ruff check bids_perfusion tests benchmarks
	$(BIN)/python -m mypy

# -n auto: one pytest-xdist worker per core; --dist loadfile: each test file in one worker,
# and the files that share a participant run too (tests/conftest.py, ONE_WORKER)
PYTEST := $(BIN)/python -m pytest -q -n auto --dist loadfile

test: lint
	$(PYTEST) --durations=15  # the slowest tests, to keep the suite short

test-fast: lint  # the suite without the end-to-end cases marked slow
	$(PYTEST) -m "not slow"

test-hpc: install  # installs slurm-wlm and munge, starts and stops their daemons
	.ci/test-hpc $(VENV)

test-container: install  # installs podman, buildah, debootstrap, runc; removes its images
	.ci/test-container $(VENV)
