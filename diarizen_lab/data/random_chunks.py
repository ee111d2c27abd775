"""Seeded noise chunks with random speaker activity: a dataset without audio files, for exercising the trainer
(tests, ``benchmarks/bench_trainer.py``)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

__all__ = ["RandomChunks"]


class RandomChunks(Dataset):
    """``size`` items ``{"waveform": (1, num_samples), "labels": (num_frames, num_speakers)}``, generated once.

    Waveforms are white noise of standard deviation 0.1; each label is active with probability 0.3.
    """

    def __init__(self, size: int, num_samples: int, num_frames: int, num_speakers: int = 4, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.waveforms = 0.1 * torch.randn(size, 1, num_samples, generator=generator)
        self.labels = (torch.rand(size, num_frames, num_speakers, generator=generator) > 0.7).float()

    def __len__(self) -> int:
        return len(self.waveforms)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"waveform": self.waveforms[index], "labels": self.labels[index]}
