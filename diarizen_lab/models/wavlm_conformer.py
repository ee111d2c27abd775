"""WavLM-Conformer: the DiariZen-style segmentation model on top of a (possibly pruned) WavLM."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diarizen_lab.config import Asset
from diarizen_lab.data.task import Task
from diarizen_lab.models.layer_weighting import LayerWeighting
from diarizen_lab.models.segmentation import PowersetSegmentationModel
from diarizen_lab.models.wavlm_source import wavlm_encoder


class WavLMConformer(PowersetSegmentationModel):
    """WavLM hidden states -> learned layer weighting -> projection -> LayerNorm -> Conformer -> powerset classifier.

    Parameters
    ----------
    wavlm : str or dict, optional
        WavLM architecture with random weights: ``"random:<preset>"`` or a ``WavLMConfig`` dict (see
        :mod:`~diarizen_lab.models.wavlm_source`). Defaults to ``"random:wavlm_base_plus"`` when no checkpoint
        is given.
    wavlm_checkpoint : Asset, optional
        Pretrained (or pruned) WavLM weights: an asset name or path in the config, resolved when it is loaded;
        the architecture is read from the file, so ``wavlm`` must not be set as well.
    freeze_wavlm : bool
        Keep WavLM weights fixed: no gradients, and WavLM stays in eval mode (no dropout, no layer drop) even
        when the model trains.
    task : Task
        Sample rate, chunk duration and speaker counts.
    **segmentation
        The Conformer and input settings of
        :class:`~diarizen_lab.models.segmentation.PowersetSegmentationModel`.
    """

    def __init__(
        self,
        wavlm: str | dict[str, Any] | None = None,
        wavlm_checkpoint: Asset | None = None,
        freeze_wavlm: bool = False,
        *,
        task: Task,
        **segmentation: Any,
    ) -> None:
        encoder = wavlm_encoder(wavlm, wavlm_checkpoint, owner="WavLMConformer", default="random:wavlm_base_plus")
        super().__init__(encoder.config.embed_dim, task=task, **segmentation)
        self.wavlm = encoder
        self.layer_weighting = LayerWeighting(encoder.config.num_layers + 1)
        self.freeze_wavlm = freeze_wavlm
        if freeze_wavlm:
            self.wavlm.requires_grad_(False)
            self.wavlm.eval()

    @property
    def frontend(self) -> nn.Module:
        return self.wavlm

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_wavlm):
            hidden_states = self.wavlm(waveforms)
        return self.layer_weighting(hidden_states)

    def frontend_args(self) -> dict[str, Any]:
        # the current config, so that a WavLM replaced by a pruned one is described correctly
        return {"wavlm": self.wavlm.config.to_dict(), "wavlm_checkpoint": None, "freeze_wavlm": self.freeze_wavlm}

    def train(self, mode: bool = True) -> WavLMConformer:
        super().train(mode)
        if self.freeze_wavlm:
            self.wavlm.eval()
        return self

    def wavlm_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.wavlm.parameters() if p.requires_grad]
