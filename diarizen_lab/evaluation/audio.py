"""Reading a whole recording for diarization: one channel (or the downmix), resampled to the model's rate."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from diarizen_lab.errors import InputError

BLOCK_FRAMES = 1 << 20
FULL_SCALE = 32767 / 32768
"""Magnitude of the largest 16-bit sample: samples at or above it are taken as clipped."""
CLIPPED_WARNING = 0.001
"""Share of clipped samples above which a warning is logged (the audio is diarized all the same)."""

logger = logging.getLogger(__name__)


def load_audio(path: str | os.PathLike, sample_rate: int, channel: int | None = None) -> torch.Tensor:
    """The ``(1, num_samples)`` float32 waveform of ``path`` at ``sample_rate``.

    ``channel`` (0-based) selects one channel; ``None`` averages all channels. The file is read block by block
    into a single mono buffer, so a multi-channel file never needs more memory than its mono signal (plus the
    resampled copy when its rate differs). A NaN or infinite sample is an :class:`InputError`; clipped audio
    (more than 0.1% of the samples at full scale) is diarized with a logged warning.
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
    position = clipped = 0
    for block in sf.blocks(str(path), blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
        samples = block[:, channel] if channel is not None else block.mean(axis=1)
        finite = np.isfinite(samples)
        if not finite.all():
            seconds = (position + int(np.argmin(finite))) / info.samplerate
            raise InputError(
                f"sample at {seconds:.3f} s is NaN or infinite", path=path,
                fix="re-export the audio: a file with NaN or infinite samples cannot be diarized",
            )
        clipped += int(np.count_nonzero(np.abs(samples) >= FULL_SCALE))
        mono[position : position + len(samples)] = samples
        position += len(samples)
    if clipped > CLIPPED_WARNING * position:
        logger.warning(
            "%s: %.1f%% of the samples are at full scale (clipped audio); diarization may be less accurate",
            path, 100 * clipped / position,
        )
    waveform = torch.from_numpy(mono[:position])[None]
    if info.samplerate != sample_rate:
        import torchaudio.functional

        waveform = torchaudio.functional.resample(waveform, info.samplerate, sample_rate)
    return waveform
