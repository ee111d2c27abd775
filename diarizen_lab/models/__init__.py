"""Neural network models: the WavLM encoder, Conformer back-ends and the segmentation models built from them.

:func:`load_model` is the one entry point for trained segmentation models (``diarize -c``, ``[finetune]
init_from``, ``checkpoints import``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


def locate_model(path_or_name: str | os.PathLike, checkpoint_dir: str | os.PathLike | None = None) -> Path:
    """The file or folder a model argument names: an existing path (a Hugging Face cache tree: its snapshot),
    else the store asset of that name (e.g. ``BUT-FIT/diarizen-wavlm-base-s80-md``)."""
    from diarizen_lab.errors import InputError
    from diarizen_lab.store import AssetNotFoundError, BrokenAssetError, CheckpointStore

    try:
        return CheckpointStore(checkpoint_dir).resolve(path_or_name)
    except BrokenAssetError:
        raise
    except AssetNotFoundError as error:
        raise InputError(
            f"no such model file or directory, nor a store asset of that name (searched: {'; '.join(error.searched)})",
            path=path_or_name,
            fix="pass a model.pt, a checkpoint or experiment directory, a released DiariZen folder, "
            "or the name of a store asset (diarizen-lab checkpoints list)",
        ) from None


def load_model(
    path_or_name: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    checkpoint_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """A trained segmentation model (a pyannote ``Model``), in eval mode, from any of:

    - our ``model.pt``, a checkpoint directory or an experiment directory (its best checkpoint);
    - a released DiariZen folder (``config.toml`` + ``pytorch_model.bin``, see :mod:`.upstream`);
    - a ``.onnx`` file written by ``diarizen-lab export``: an
      :class:`~diarizen_lab.export.onnx.OnnxSegmentationModel` run by onnxruntime on CPU;
    - a store asset name or Hugging Face cache tree holding either (``checkpoint_dir``: the store).
    """
    from diarizen_lab.models import io
    from diarizen_lab.models.upstream import is_released_model, load_released_model

    path = locate_model(path_or_name, checkpoint_dir)
    if is_released_model(path):
        return load_released_model(path, map_location, checkpoint_dir)
    if path.suffix == ".onnx":
        from diarizen_lab.export.onnx import OnnxSegmentationModel  # optional [export] extra

        return OnnxSegmentationModel(path)
    return io.load_model_file(path, map_location)
