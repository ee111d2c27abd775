"""Reading a whole recording for diarization: one channel (or the downmix), resampled to the model's rate."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from diarizen_lab.errors import InputError

BLOCK_FRAMES = 1 << 20


def load_audio(path: str | os.PathLike, sample_rate: int, channel: int | None = None) -> torch.Tensor:
    """The ``(1, num_samples)`` float32 waveform of ``path`` at ``sample_rate``.

    ``channel`` (0-based) selects one channel; ``None`` averages all channels. The file is read block by block
    into a single mono buffer, so a multi-channel file never needs more memory than its mono signal (plus the
    resampled copy when its rate differs).
    """
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise InputError(f"cannot read audio ({error})", path=path, fix="pass a readable WAV/FLAC file") from None
    if info.frames == 0:
        raise InputError("audio file holds no samples", path=path)
    if channel is not None and not 0 <= channel < info.channels:
        raise InputError(
            f"channel {channel} requested but the file has {info.channels} channel(s)", path=path,
            fix=f"choose a channel in 0..{info.channels - 1}, or none to downmix",
        )
    mono = np.empty(info.frames, dtype=np.float32)
    position = 0
    for block in sf.blocks(str(path), blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
        samples = block[:, channel] if channel is not None else block.mean(axis=1)
        mono[position : position + len(samples)] = samples
        position += len(samples)
    waveform = torch.from_numpy(mono[:position])[None]
    if info.samplerate != sample_rate:
        import torchaudio.functional

        waveform = torchaudio.functional.resample(waveform, info.samplerate, sample_rate)
    return waveform
