#!/usr/bin/env bash
# `make demo`: the tiny end-to-end recipe on the built-in synthetic corpus, on CPU:
# espeak-ng meetings -> train a tiny WavLM-Conformer (validation DER printed per epoch) -> average the best
# epochs -> pyannote.audio pipeline on dev/test -> DER at collar 0 and 0.25, next to the untrained model's.
# Re-running it resumes where it stopped; `make clean-demo` starts over.
set -euo pipefail
cd "$(dirname "$0")/.."
# the demo never needs the network: every outbound connection is refused, and any attempt is logged
export DIARIZEN_LAB_BLOCK_NETWORK=1
export DIARIZEN_LAB_NETWORK_LOG="$PWD/exp/demo-network-attempts.log"
mkdir -p exp && rm -f "$DIARIZEN_LAB_NETWORK_LOG"
.venv/bin/python recipes/diar_ssl/run_stage.py -C conf/tiny_wavlm_conformer.toml --with-untrained --require-learning 0.5 "$@"
if [ -e "$DIARIZEN_LAB_NETWORK_LOG" ]; then
    echo "demo: network connections were attempted (refused):" >&2
    cat "$DIARIZEN_LAB_NETWORK_LOG" >&2
    exit 1
fi
echo "demo: no network connection was attempted"
