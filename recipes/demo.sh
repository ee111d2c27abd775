#!/usr/bin/env bash
# `make demo`: the tiny end-to-end recipe on the built-in synthetic corpus, on CPU, in about 10 minutes:
# espeak-ng meetings -> train a tiny WavLM-Conformer (validation DER printed per epoch) -> average the best
# epochs -> pyannote.audio pipeline on dev/test -> DER at collar 0 and 0.25, next to the untrained model's.
# Re-running it resumes where it stopped; `make clean-demo` starts over.
set -euo pipefail
cd "$(dirname "$0")/.."
export DIARIZEN_LAB_BLOCK_NETWORK=1   # the demo never needs the network: prove it
.venv/bin/python recipes/diar_ssl/run_stage.py -C conf/tiny_wavlm_conformer.toml --with-untrained "$@"
