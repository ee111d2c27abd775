"""Fbank-Conformer: the log-mel baseline with the same Conformer and powerset head as the WavLM model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diarizen_lab.data.task import Task
from diarizen_lab.models.fbank import LogMelFbank
from diarizen_lab.models.segmentation import PowersetSegmentationModel


class FbankConformer(PowersetSegmentationModel):
    """Log-mel filterbank -> projection -> LayerNorm -> Conformer -> powerset classifier.

    Parameters
    ----------
    num_mel_bins, window_ms, hop_ms, frame_stacking
        Front end (see :class:`~diarizen_lab.models.fbank.LogMelFbank`); the defaults give 80 log-mel bins every
        10 ms stacked in pairs, i.e. 20 ms output frames.
    task : Task
        Sample rate (also the front end's), chunk duration and speaker counts.
    **segmentation
        The Conformer and input settings of
        :class:`~diarizen_lab.models.segmentation.PowersetSegmentationModel`.
    """

    def __init__(
        self,
        num_mel_bins: int = 80,
        window_ms: float = 25.0,
        hop_ms: float = 10.0,
        frame_stacking: int = 2,
        *,
        task: Task,
        **segmentation: Any,
    ) -> None:
        fbank = LogMelFbank(task.sample_rate, num_mel_bins, window_ms, hop_ms, frame_stacking)
        super().__init__(fbank.dimension, task=task, **segmentation)
        self.fbank = fbank
        self._frontend_args = dict(
            num_mel_bins=num_mel_bins, window_ms=window_ms, hop_ms=hop_ms, frame_stacking=frame_stacking
        )

    @property
    def frontend(self) -> nn.Module:
        return self.fbank

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.fbank(waveforms)

    def frontend_args(self) -> dict[str, Any]:
        return dict(self._frontend_args)
