"""Fbank-Conformer: the log-mel baseline with the same Conformer and powerset head as the WavLM model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diarizen_lab.models.fbank import LogMelFbank
from diarizen_lab.models.segmentation import PowersetSegmentationModel


class FbankConformer(PowersetSegmentationModel):
    """Log-mel filterbank -> projection -> LayerNorm -> Conformer -> powerset classifier.

    Parameters
    ----------
    num_mel_bins, window_ms, hop_ms, frame_stacking
        Front end (see :class:`~diarizen_lab.models.fbank.LogMelFbank`); the defaults give 80 log-mel bins every
        10 ms stacked in pairs, i.e. 20 ms output frames.
    **kwargs
        Conformer, powerset and input settings of
        :class:`~diarizen_lab.models.segmentation.PowersetSegmentationModel`.
    """

    def __init__(
        self,
        num_mel_bins: int = 80,
        window_ms: float = 25.0,
        hop_ms: float = 10.0,
        frame_stacking: int = 2,
        chunk_size: float = 8.0,
        attention_in: int = 256,
        ffn_hidden: int = 1024,
        num_heads: int = 4,
        num_layers: int = 4,
        kernel_size: int = 31,
        dropout: float = 0.1,
        max_speakers_per_chunk: int = 4,
        max_speakers_per_frame: int = 2,
        selected_channel: int = 0,
        sample_rate: int = 16000,
        num_channels: int = 1,
        conformer_conv_norm: str = "batch",
    ) -> None:
        fbank = LogMelFbank(sample_rate, num_mel_bins, window_ms, hop_ms, frame_stacking)
        super().__init__(
            fbank.dimension,
            chunk_size=chunk_size,
            attention_in=attention_in,
            ffn_hidden=ffn_hidden,
            num_heads=num_heads,
            num_layers=num_layers,
            kernel_size=kernel_size,
            dropout=dropout,
            max_speakers_per_chunk=max_speakers_per_chunk,
            max_speakers_per_frame=max_speakers_per_frame,
            selected_channel=selected_channel,
            sample_rate=sample_rate,
            num_channels=num_channels,
            conformer_conv_norm=conformer_conv_norm,
        )
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
