#!/usr/bin/env bash
# The tiny end-to-end recipe behind `make demo`: built-in synthetic corpus -> train -> average -> diarize -> score.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
echo "== diarizen-lab doctor"
$PY -m diarizen_lab doctor || true
