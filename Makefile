# The two commands of the README: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PYANNOTE_METRICS_ENABLED := 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test bench clean-demo

setup:
	@bash scripts/setup.sh

demo: setup
	@bash recipes/demo.sh

test: setup
	DIARIZEN_LAB_BLOCK_NETWORK=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/run_all.py

clean-demo:
	rm -rf data/synth exp/tiny_wavlm_conformer
