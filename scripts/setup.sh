#!/usr/bin/env bash
# Idempotent environment setup: Debian packages, .venv with the pinned stack, editable install.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(espeak-ng sox strace libavcodec59 libavformat59 libavutil57 libswresample4 libavfilter8 libswscale6 libavdevice59)
missing=()
for pkg in "${debs[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $PY"
    "$PY" -m venv .venv
fi

stamp=.venv/.diarizen_lab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing the pinned stack into .venv (first time: a few minutes)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test,export]'
    touch "$stamp"
fi
echo "setup: ok ($(.venv/bin/python -c 'import torch, pyannote.audio; print("torch", torch.__version__, "pyannote.audio", pyannote.audio.__version__)'))"
