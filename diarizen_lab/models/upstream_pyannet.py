"""Upstream DiariZen's pyannote baseline (``diarizen.models.eend.model_pyannote.Model``) as a trainable model here.

It is pyannote.audio's ``PyanNet`` with upstream's sizes — SincNet (stride 10), four bidirectional LSTM layers of
128 units with dropout 0.5 between them, two linear layers of 128 with leaky ReLU — and a powerset output. The
module names are PyanNet's, which are upstream's too (``sincnet``, ``lstm``, ``linear``, ``classifier``).
"""

from __future__ import annotations

from typing import Any

import torch
from pyannote.audio.core.task import Problem, Resolution, Specifications
from pyannote.audio.models.segmentation import PyanNet

#: upstream's LSTM: PyanNet's defaults but four layers and dropout 0.5
UPSTREAM_LSTM = {"hidden_size": 128, "num_layers": 4, "bidirectional": True, "monolithic": True, "dropout": 0.5}


class PyanNetBaseline(PyanNet):
    """SincNet + BiLSTM + linear layers with a powerset output (see the module documentation).

    Parameters
    ----------
    chunk_size : float
        Training chunk duration in seconds.
    max_speakers_per_chunk, max_speakers_per_frame : int
        Local speakers per chunk, and the most of them active in one frame (the powerset classes).
    selected_channel : int
        The channel used when the input has several.
    sample_rate : int
        Expected sample rate in Hz.
    """

    def __init__(
        self,
        chunk_size: float = 8.0,
        max_speakers_per_chunk: int = 4,
        max_speakers_per_frame: int = 2,
        selected_channel: int = 0,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__(lstm=dict(UPSTREAM_LSTM), sample_rate=sample_rate, num_channels=1)
        self.selected_channel = selected_channel
        self._args: dict[str, Any] = dict(
            chunk_size=chunk_size, max_speakers_per_chunk=max_speakers_per_chunk,
            max_speakers_per_frame=max_speakers_per_frame, selected_channel=selected_channel, sample_rate=sample_rate,
        )
        classes = [f"speaker#{i + 1}" for i in range(max_speakers_per_chunk)]
        self.specifications = Specifications(
            Problem.MONO_LABEL_CLASSIFICATION, Resolution.FRAME, chunk_size, classes=classes,
            powerset_max_classes=max_speakers_per_frame, permutation_invariant=True,
        )
        self.build()  # the classifier and activation of these specifications

    def architecture(self) -> dict[str, Any]:
        """``{"path": ..., "args": ...}`` rebuilding this architecture (random weights)."""
        return {"path": f"{type(self).__module__}.{type(self).__qualname__}", "args": dict(self._args)}

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Powerset log-probabilities ``(batch, frame, class)`` of ``(batch, channel, sample)`` waveforms."""
        channel = 0 if waveforms.shape[1] == 1 else self.selected_channel
        return super().forward(waveforms[:, channel : channel + 1])
