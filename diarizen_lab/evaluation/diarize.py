"""Diarizing a set of recordings with a trained model: one RTTM per recording, written atomically when it is done.

:func:`diarize_recordings` is what ``diarizen-lab diarize`` and the recipes' diarization stage run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diarizen_lab.evaluation.pipeline import DiarizationConfig


def diarize_recordings(
    model: str | os.PathLike,
    recordings: Mapping[str, Path],
    output_dir: Path,
    settings: DiarizationConfig,
    *,
    settings_given: Collection[str] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    device: str | None = None,
    skip_existing: bool = False,
) -> list[Path]:
    """Write ``output_dir/<recording>.rttm`` for each recording (name -> audio path); return the files written.

    Parameters
    ----------
    model
        Anything :func:`diarizen_lab.models.load_model` reads (model file, experiment dir, released folder, asset
        name, ``.onnx`` export). A released model's pipeline settings replace those of ``settings`` whose names
        are not in ``settings_given`` (the ones the user set).
    settings_given
        Names of the ``[diarization]`` settings the user gave explicitly.
    device
        Torch device (default: cuda if available, else cpu).
    skip_existing
        Keep the RTTMs already in ``output_dir`` (resuming a stopped run).
    """
    from tqdm import tqdm

    from diarizen_lab.errors import DiarizenLabError
    from diarizen_lab.evaluation.pipeline import build_pipeline, diarize_file
    from diarizen_lab.evaluation.rttm import write_rttm
    from diarizen_lab.models import load_model, locate_model
    from diarizen_lab.models.upstream import released_pipeline_settings
    from diarizen_lab.utils.atomic import require_writable_dir
    from diarizen_lab.utils.devices import resolve_device

    model_path = locate_model(model, checkpoint_dir)
    released = {
        name: value for name, value in released_pipeline_settings(model_path).items() if name not in settings_given
    }
    if released:
        settings = dataclasses.replace(settings, **released)
        print("released model settings: " + ", ".join(f"{name}={value}" for name, value in released.items()))
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise DiarizenLabError(f"{output_dir}: exists and is not a directory (-o takes the output directory)")
    require_writable_dir(output_dir, "-o output directory")
    torch_device = resolve_device(device)
    if skip_existing:
        recordings = {uri: path for uri, path in recordings.items() if not (output_dir / f"{uri}.rttm").exists()}
    pipeline = build_pipeline(
        load_model(model_path, checkpoint_dir=checkpoint_dir), settings, checkpoint_dir=checkpoint_dir,
        device=torch_device,
    )
    written = []
    for uri, path in tqdm(recordings.items(), desc="diarize", unit="rec", disable=len(recordings) < 2):
        written.append(output_dir / f"{uri}.rttm")
        write_rttm(written[-1], diarize_file(pipeline, path, uri=uri), uri)
    return written
