"""Offline settings applied when ``diarizen_lab`` is imported, whatever was imported before it.

- ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE`` default to ``1``. ``huggingface_hub``
  reads them once, at its own import, and transformers asks it: when it was imported first, its
  ``constants.HF_HUB_OFFLINE`` is set from the variables now.
- ``ORT_DISABLE_TELEMETRY`` defaults to ``1``: onnxruntime (imported by pyannote.audio's speaker-verification
  module) sends usage events to Microsoft's telemetry host from a C++ thread unless it is set before onnxruntime
  initializes. Once imported without it, onnxruntime's uploader cannot be stopped from Python (its
  ``disable_telemetry_events()``, called anyway, still lets it connect): importing ``diarizen_lab`` after
  onnxruntime logs a warning, and ``doctor`` reports it. Set ``ORT_DISABLE_TELEMETRY=1`` in the environment, or
  import ``diarizen_lab`` first.
- ``PYANNOTE_METRICS_ENABLED`` defaults to ``0``. pyannote.audio's telemetry module sets it to ``true`` at its
  import when it is unset and reads it at every model or pipeline it tracks (each one a request to its
  telemetry host), so a value pyannote set is overridden; only a value the user set is kept.

A value the user set (in the environment the process started with, or before pyannote.audio was imported) is
respected; ``diarizen-lab doctor`` reports each one that turns a client back on.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "PYANNOTE_METRICS_ENABLED": "0",
    "ORT_DISABLE_TELEMETRY": "1",
}
TELEMETRY_VARIABLE = "PYANNOTE_METRICS_ENABLED"
TELEMETRY_MODULE = "pyannote.audio.telemetry.metrics"
ORT_VARIABLE = "ORT_DISABLE_TELEMETRY"
_TRUE = {"1", "on", "yes", "true"}
_late_imports: list[str] = []
"""Libraries imported before diarizen_lab whose telemetry could not be turned off."""
logger = logging.getLogger(__name__)


def go_offline() -> None:
    """Apply the defaults above (see the module documentation)."""
    onnxruntime_started = "onnxruntime" in sys.modules and os.environ.get(ORT_VARIABLE) != "1"
    if TELEMETRY_MODULE in sys.modules and TELEMETRY_VARIABLE not in _launch_environment():
        os.environ[TELEMETRY_VARIABLE] = OFFLINE_DEFAULTS[TELEMETRY_VARIABLE]  # pyannote's own default
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = hub_offline()
    if onnxruntime_started:
        sys.modules["onnxruntime"].disable_telemetry_events()  # the non-essential events; the uploader already runs
        _late_imports.append("onnxruntime")
        logger.warning(
            "onnxruntime was imported before diarizen_lab without %s=1: its telemetry cannot be turned off in "
            "this process (set %s=1 in the environment, or import diarizen_lab first)", ORT_VARIABLE, ORT_VARIABLE,
        )


def telemetry_problems() -> list[str]:
    """What would send usage data from this process: pyannote's telemetry re-enabled, onnxruntime's started."""
    problems = [f"{name} was imported before diarizen_lab with its telemetry on" for name in _late_imports]
    if telemetry_enabled():
        problems.insert(0, f"pyannote.audio's telemetry is enabled by {TELEMETRY_VARIABLE}")
    return problems


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
