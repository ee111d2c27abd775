"""``diarizen-lab doctor``: what this machine has, what is missing, and whether we are offline."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import shutil
from pathlib import Path

REQUIRED_PACKAGES = [
    "torch",
    "torchaudio",
    "torchcodec",
    "pyannote.audio",
    "pyannote.core",
    "pyannote.metrics",
    "accelerate",
    "tensorboard",
    "soundfile",
]
#: Debian programs: (name, what needs it)
PROGRAMS = [("espeak-ng", "the built-in synthetic corpus"), ("sox", "audio conversion in corpus recipes")]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="report versions, GPUs, offline mode and checkpoint assets; exit 1 if something required is missing",
        description=__doc__,
    )
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="checkpoint store to inspect")
    parser.add_argument(
        "-C", "--config", type=Path, default=None, help="also check the pretrained assets this config needs"
    )
    parser.set_defaults(func=run)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _row(label: str, value: str, ok: bool = True) -> None:
    print(f"  [{'ok' if ok else '!!'}] {label:<26} {value}")


def run(args: argparse.Namespace) -> int:
    problems = 0
    print("diarizen-lab doctor")
    print("environment")
    _row("python", platform.python_version())
    for name in REQUIRED_PACKAGES:
        version = _version(name)
        if version is not None:
            try:
                importlib.import_module(name)
            except Exception as error:  # a broken install (e.g. torchcodec without FFmpeg libraries)
                version = f"{version}, but import fails: {str(error).splitlines()[0][:120]}"
                problems += 1
                _row(name, version, ok=False)
                continue
        _row(name, version or "missing (run `make setup`)", ok=version is not None)
        problems += version is None
    for program, purpose in PROGRAMS:
        found = shutil.which(program)
        _row(program, found or f"missing: needed for {purpose} (apt-get install {program})", ok=bool(found))
        problems += not found

    print("devices")
    import torch

    _row("torch build", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})")
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            _row(f"gpu {index}", f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB")
    else:
        _row("gpu", "no GPU: training runs on CPU (slow; fine for the tiny configs)")
    _row("cpu threads", str(torch.get_num_threads()))

    print("offline mode")
    from diarizen_lab import OFFLINE_DEFAULTS
    from diarizen_lab.utils import netguard

    from diarizen_lab.offline import TELEMETRY_VARIABLE, hub_offline, telemetry_problems

    for variable, wanted in OFFLINE_DEFAULTS.items():
        if variable == TELEMETRY_VARIABLE:
            continue  # the telemetry row below says whether its value sends anything
        value = os.environ.get(variable)
        enforced = value == wanted
        _row(variable, f"{value!r}" + ("" if enforced else f" (set {variable}={wanted} to stay offline)"), enforced)
        problems += not enforced
    telemetry = telemetry_problems()
    setting = f"{TELEMETRY_VARIABLE}={os.environ.get(TELEMETRY_VARIABLE)!r}"
    _row("telemetry", f"ON: {'; '.join(telemetry)}" if telemetry else f"off ({setting})", not telemetry)
    problems += bool(telemetry)
    _row("huggingface_hub", "offline" if hub_offline() else "ONLINE: HF_HUB_OFFLINE is off", hub_offline())
    _row("network guard", "on: outbound connections refused" if netguard.is_installed()
         else "off (set DIARIZEN_LAB_BLOCK_NETWORK=1 to refuse outbound connections)")

    from diarizen_lab.cli._assets import report_assets

    problems += report_assets(args.checkpoint_dir, args.config)

    print("result:", "ok" if problems == 0 else f"{problems} problem(s) found")
    return 0 if problems == 0 else 1
