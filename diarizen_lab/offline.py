"""Offline settings applied when ``diarizen_lab`` is imported, whatever was imported before it.

- ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE`` default to ``1``. ``huggingface_hub``
  reads them once, at its own import, and transformers asks it: when it was imported first, its
  ``constants.HF_HUB_OFFLINE`` is set from the variables now.
- ``PYANNOTE_METRICS_ENABLED`` defaults to ``0``. pyannote.audio's telemetry module sets it to ``true`` at its
  import when it is unset and reads it at every model or pipeline it tracks (each one a request to its
  telemetry host), so a value pyannote set is overridden; only a value the user set is kept.

A value the user set (in the environment the process started with, or before pyannote.audio was imported) is
respected; ``diarizen-lab doctor`` reports each one that turns a client back on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "PYANNOTE_METRICS_ENABLED": "0",
}
TELEMETRY_VARIABLE = "PYANNOTE_METRICS_ENABLED"
TELEMETRY_MODULE = "pyannote.audio.telemetry.metrics"
_TRUE = {"1", "on", "yes", "true"}


def go_offline() -> None:
    """Apply the defaults above (see the module documentation)."""
    if TELEMETRY_MODULE in sys.modules and TELEMETRY_VARIABLE not in _launch_environment():
        os.environ[TELEMETRY_VARIABLE] = OFFLINE_DEFAULTS[TELEMETRY_VARIABLE]  # pyannote's own default
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = hub_offline()


def hub_offline() -> bool:
    """Whether the environment puts huggingface_hub offline (its own rule: either variable true)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.lower() in _TRUE


def telemetry_enabled() -> bool:
    """Whether pyannote.audio's telemetry would send (its own rule: the variable is ``true`` or ``1``)."""
    return os.environ.get(TELEMETRY_VARIABLE, "").lower() in ("true", "1")


def _launch_environment() -> dict[str, str]:
    """The variables this process started with (Linux ``/proc/self/environ``; empty where unavailable, so a
    value of unknown origin counts as a library's, not the user's)."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return {}
    pairs = (entry.decode(errors="replace").partition("=") for entry in raw.split(b"\0") if entry)
    return {name: value for name, _, value in pairs}
