"""Take the WavLM out of a trained diarization model: the teacher (and the student's starting point) of
"fine-tune before pruning"."""

from __future__ import annotations

import os

from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.models.io import find_model_file, load_model
from diarizen_lab.models.wavlm import WavLM
from diarizen_lab.pruning.student import PruningStudent

__all__ = ["extract_wavlm", "write_teacher"]


def extract_wavlm(source: str | os.PathLike) -> WavLM:
    """The ``wavlm`` of the model in ``source`` (a model.pt, an averaged checkpoint, a checkpoint directory
    or an experiment directory), in eval mode on CPU."""
    path = find_model_file(source)
    model = load_model(path)
    if isinstance(model, PruningStudent):
        raise DiarizenLabError(
            f"{path} is a gated pruning student: turn it into a WavLM with `diarizen-lab prune apply`"
        )
    wavlm = getattr(model, "wavlm", None)
    if not isinstance(wavlm, WavLM):
        raise DiarizenLabError(
            f"{path} holds a {type(model).__name__}, which has no WavLM encoder (attribute 'wavlm'): "
            "pass a WavLM-Conformer model"
        )
    return wavlm.eval()


def write_teacher(source: str | os.PathLike, output: str | os.PathLike) -> WavLM:
    """Write the WavLM of the model in ``source`` (see :func:`extract_wavlm`) to the WavLM file ``output``."""
    from diarizen_lab.store.wavlm_formats import save_wavlm

    wavlm = extract_wavlm(source)
    save_wavlm(output, wavlm)
    return wavlm
