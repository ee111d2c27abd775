"""Base class of the powerset speaker-segmentation models: front end -> Conformer -> powerset classifier.

Subclasses provide the front end (a module with the pyannote frame functions that maps a mono waveform to
``(batch, frame, feature_dim)`` features); this class owns everything after it and the pyannote ``Model`` interface,
so ``pyannote.audio.Inference`` and ``pyannote.audio.pipelines.SpeakerDiarization`` accept the models as they are,
without a pyannote ``Task``: the :class:`~diarizen_lab.data.task.Task` given to the constructor supplies the
sample rate and the ``specifications``.

Subclasses take their front-end arguments and forward the rest (``**segmentation``) to
:class:`PowersetSegmentationModel`; the config loader checks forwarded keys against this class's signature.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from pyannote.audio.core.io import Audio
from pyannote.audio.core.model import Model
from torch import nn

from diarizen_lab.data.task import Task
from diarizen_lab.models.conformer import ConformerEncoder


class PowersetSegmentationModel(Model, abc.ABC):
    """Chunk-level speaker segmentation with a powerset output.

    ``forward`` maps ``(batch, channel, sample)`` waveforms to ``(batch, frame, num_powerset_classes)``
    log-probabilities over the sets of at most ``task.max_speakers_per_frame`` of ``task.max_speakers_per_chunk``
    local speakers (pyannote.audio's ``Powerset`` class order).

    Parameters
    ----------
    feature_dim : int
        Dimension of the front-end features, projected to ``attention_in``.
    task : Task
        Sample rate, chunk duration and speaker counts (``model.task``; ``specifications``).
    attention_in, ffn_hidden, num_heads, num_layers, kernel_size, dropout
        Conformer encoder (see :class:`~diarizen_lab.models.conformer.ConformerEncoder`).
    selected_channel : int
        Channel used when the input has several channels; mono input is used as is.
    num_channels : int
        Channels the model accepts. With 1, pyannote's ``Audio`` downmixes files to mono; with more, files keep
        their channels and ``selected_channel`` picks one.
    """

    def __init__(
        self,
        feature_dim: int,
        *,
        task: Task,
        attention_in: int = 256,
        ffn_hidden: int = 1024,
        num_heads: int = 4,
        num_layers: int = 4,
        kernel_size: int = 31,
        dropout: float = 0.1,
        selected_channel: int = 0,
        num_channels: int = 1,
    ) -> None:
        # pyannote's Model only declares mono input: channels are handled here.
        super().__init__(sample_rate=task.sample_rate, num_channels=1)
        if not 0 <= selected_channel < num_channels:
            raise ValueError(f"selected_channel ({selected_channel}) must be in [0, num_channels={num_channels}).")
        if num_channels > 1:
            self.hparams.num_channels = num_channels
            self.audio = Audio(sample_rate=task.sample_rate, mono=None)
        self.selected_channel = selected_channel
        self.task = task  # pyannote's Model reads its specifications from its task
        self._segmentation_args: dict[str, Any] = dict(
            attention_in=attention_in,
            ffn_hidden=ffn_hidden,
            num_heads=num_heads,
            num_layers=num_layers,
            kernel_size=kernel_size,
            dropout=dropout,
            selected_channel=selected_channel,
            num_channels=num_channels,
        )

        self.projection = nn.Linear(feature_dim, attention_in)
        self.projection_norm = nn.LayerNorm(attention_in)
        self.conformer = ConformerEncoder(attention_in, ffn_hidden, num_heads, num_layers, kernel_size, dropout)
        self.classifier = nn.Linear(attention_in, self.dimension)
        self.activation = nn.LogSoftmax(dim=-1)

    @property
    @abc.abstractmethod
    def frontend(self) -> nn.Module:
        """The module defining the frame geometry (``num_frames``, ``receptive_field_size``/``_center``)."""

    @abc.abstractmethod
    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Front-end features ``(batch, frame, feature_dim)`` of mono waveforms ``(batch, sample)``."""

    @abc.abstractmethod
    def frontend_args(self) -> dict[str, Any]:
        """Constructor arguments of the front end, merged into :meth:`architecture`."""

    @property
    def dimension(self) -> int:
        """Number of powerset classes (output dimension)."""
        return self.specifications.num_powerset_classes

    def architecture(self) -> dict[str, Any]:
        """``{"path", "args", "task"}`` rebuilding this architecture (random weights, no pretrained file read)."""
        cls = type(self)
        args = {**self.frontend_args(), **self._segmentation_args}
        return {"path": f"{cls.__module__}.{cls.__qualname__}", "args": args, "task": self.task.to_dict()}

    def wavlm_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the self-supervised encoder (the "small" learning-rate group)."""
        return []

    def non_wavlm_parameters(self) -> list[nn.Parameter]:
        """Every other trainable parameter (the "big" learning-rate group)."""
        wavlm = {id(p) for p in self.wavlm_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in wavlm]

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for ``num_samples`` input samples."""
        return self.frontend.num_frames(num_samples)

    def receptive_field_size(self, num_frames: int = 1) -> int:
        """Receptive field of ``num_frames`` consecutive output frames, in samples."""
        return self.frontend.receptive_field_size(num_frames)

    def receptive_field_center(self, frame: int = 0) -> int:
        """Sample index at the center of the receptive field of output frame ``frame``."""
        return self.frontend.receptive_field_center(frame)

    def select_channel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, channel, sample)`` -> ``(batch, sample)``: the only channel, or ``selected_channel``."""
        if waveforms.ndim != 3:
            raise ValueError(f"Expected (batch, channel, sample) waveforms, got shape {tuple(waveforms.shape)}.")
        num_channels = waveforms.shape[1]
        if num_channels == 1:
            return waveforms[:, 0]
        if self.selected_channel >= num_channels:
            raise ValueError(
                f"selected_channel is {self.selected_channel} but the input has only {num_channels} channels."
            )
        return waveforms[:, self.selected_channel]

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Powerset log-probabilities ``(batch, frame, num_powerset_classes)`` of ``(batch, channel, sample)``."""
        features = self.features(self.select_channel(waveforms))
        hidden = self.conformer(self.projection_norm(self.projection(features)))
        return self.activation(self.classifier(hidden))
