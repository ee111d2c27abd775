"""On-the-fly waveform augmentation of training chunks: reverberation, background noise and gain.

A training config enables it with a table under the training dataset's arguments::

    [train_dataset.args.augmentation]
    rir_dir = "data/rirs"            # room impulse responses (every audio file below, recursively)
    reverb_probability = 0.5
    noise_dir = "data/musan"         # background audio; MUSAN's noise/, music/ and speech/ folders all count
    snr_db = [5.0, 20.0]             # signal-to-noise ratio, uniform in this range
    noise_probability = 0.5
    gain_db = [-6.0, 6.0]            # random gain, uniform in this range
    gain_probability = 0.5

Each effect is on when its key (``rir_dir``, ``noise_dir``, ``gain_db``) is given, and applied to a chunk with
its probability, in the order reverberation, noise, gain. The DSP is the libraries': SciPy's ``fftconvolve`` with
the impulse response (scaled to unit energy, output realigned on its strongest tap so that the labels stay in
place; torchaudio's ``fftconvolve`` transforms at the exact output length, which is often prime and then ten
times slower), torchaudio's ``add_noise`` at the drawn SNR (against the chunk's energy, zero padding included)
and ``gain``. A noise file shorter than the chunk is repeated; a longer one is read from a random offset.

Randomness: every draw for chunk ``index`` in epoch ``epoch`` of a run seeded ``seed`` comes from a generator
seeded with ``(seed, epoch, index)``, so an epoch is the same whatever the number of workers or processes, and
a resumed run is bit-identical; no global random state is used or changed. Folders are listed (and each file's
header read) when the config is loaded: a missing folder, or one without audio, is an error there.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from diarizen_lab.errors import DiarizenLabError, InputError

#: File name endings read as audio in the noise and impulse-response folders.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclasses.dataclass(frozen=True)
class AudioFile:
    """An audio file of a noise or impulse-response folder, with its length and rate."""

    path: Path
    frames: int
    sample_rate: int


def list_audio(folder: Path, key: str) -> tuple[AudioFile, ...]:
    """Every audio file below ``folder``, sorted by path; an error when there is none."""
    if not folder.is_dir():
        raise DiarizenLabError(f"{key}: no such folder {folder} (create it, or remove {key} to disable the effect)")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not paths:
        raise DiarizenLabError(f"{key}: no audio file ({', '.join(AUDIO_SUFFIXES)}) under {folder}")
    files = []
    for path in paths:
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as error:
            raise InputError(f"cannot read audio ({error})", path=path, fix=f"remove it from {key}") from None
        if info.frames == 0:
            raise InputError("empty audio file", path=path, fix=f"remove it from {key}")
        files.append(AudioFile(path, info.frames, info.samplerate))
    return tuple(files)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Settings of the augmentation (see the module docstring); applied by :meth:`__call__`."""

    rir_dir: Path | None = None
    reverb_probability: float = 0.5
    noise_dir: Path | None = None
    snr_db: tuple[float, float] = (5.0, 20.0)
    noise_probability: float = 0.5
    gain_db: tuple[float, float] | None = None
    gain_probability: float = 0.5
    rirs: tuple[AudioFile, ...] = dataclasses.field(init=False, repr=False)
    noises: tuple[AudioFile, ...] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rir_dir is None and self.noise_dir is None and self.gain_db is None:
            raise DiarizenLabError("enables nothing: give rir_dir, noise_dir or gain_db")
        for key in ("reverb_probability", "noise_probability", "gain_probability"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise DiarizenLabError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        for key in ("snr_db", "gain_db"):
            low, high = getattr(self, key) or (0.0, 0.0)
            if low > high:
                raise DiarizenLabError(f"{key} must be [low, high] with low <= high, got [{low}, {high}]")
        object.__setattr__(self, "rirs", () if self.rir_dir is None else list_audio(self.rir_dir, "rir_dir"))
        object.__setattr__(self, "noises", () if self.noise_dir is None else list_audio(self.noise_dir, "noise_dir"))

    def check_sample_rate(self, sample_rate: int) -> None:
        """Refuse noise or impulse responses at another rate than the chunks'."""
        for key, files in (("rir_dir", self.rirs), ("noise_dir", self.noises)):
            other = [f for f in files if f.sample_rate != sample_rate]
            if other:
                raise InputError(
                    f"{len(other)} file(s) of {key} are not at {sample_rate} Hz (this one: {other[0].sample_rate} Hz)",
                    path=other[0].path, fix=f"resample them (sox in.wav -r {sample_rate} out.wav)",
                )

    def __call__(self, waveform: torch.Tensor, *, seed: int, epoch: int, index: int) -> torch.Tensor:
        """The augmented ``(1, samples)`` chunk ``index`` of ``epoch`` in a run seeded ``seed``."""
        import scipy.signal
        import torchaudio.functional as F

        rng = np.random.default_rng([seed % 2**64, epoch, index])
        if self.rirs and rng.random() < self.reverb_probability:
            rir = self._read(self.rirs[rng.integers(len(self.rirs))], rng, None)
            rir = rir / np.linalg.norm(rir)
            delay = int(np.abs(rir).argmax())
            wet = scipy.signal.fftconvolve(waveform.numpy(), rir[None], axes=-1)  # FFT at a fast length
            waveform = torch.from_numpy(wet[:, delay : delay + waveform.shape[-1]].astype(np.float32))
        if self.noises and rng.random() < self.noise_probability:
            noise = torch.from_numpy(self._read(self.noises[rng.integers(len(self.noises))], rng, waveform.shape[-1]))
            snr = rng.uniform(*self.snr_db)
            if torch.any(noise != 0):  # digital silence has no level to scale
                waveform = F.add_noise(waveform, noise[None], torch.tensor([snr], dtype=waveform.dtype))
        if self.gain_db is not None and rng.random() < self.gain_probability:
            waveform = F.gain(waveform, rng.uniform(*self.gain_db))
        return waveform

    @staticmethod
    def _read(file: AudioFile, rng: np.random.Generator, samples: int | None) -> np.ndarray:
        """The first channel of ``file``: whole (``samples=None``), or ``samples`` from a random offset
        (repeated when the file is shorter)."""
        start = 0 if samples is None or file.frames <= samples else int(rng.integers(file.frames - samples + 1))
        frames = -1 if samples is None else min(samples, file.frames)
        audio, _ = sf.read(str(file.path), start=start, frames=frames, dtype="float32", always_2d=True)
        audio = audio[:, 0]
        return audio if samples is None else np.resize(audio, samples)
