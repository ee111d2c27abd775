"""WavLM-Conformer: the DiariZen-style segmentation model on top of a (possibly pruned) WavLM."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.models.layer_weighting import LayerWeighting
from diarizen_lab.models.segmentation import PowersetSegmentationModel
from diarizen_lab.models.wavlm import TRAINING_FIELDS, WavLM, WavLMConfig, get_preset, load_wavlm


class WavLMConformer(PowersetSegmentationModel):
    """WavLM hidden states -> learned layer weighting -> projection -> LayerNorm -> Conformer -> powerset classifier.

    Parameters
    ----------
    wavlm : str or dict, optional
        WavLM architecture with random weights: a preset name (``get_preset``) or a ``WavLMConfig`` dict.
        Defaults to ``"wavlm_base_plus"`` when no checkpoint is given.
    wavlm_checkpoint : str, optional
        Asset name or path of pretrained (or pruned) WavLM weights, resolved with the offline store; the
        architecture is read from the checkpoint, so ``wavlm`` must not be set as well.
    freeze_wavlm : bool
        Keep WavLM weights fixed: no gradients, and WavLM stays in eval mode (no dropout, no layer drop) even
        when the model trains.
    wavlm_training : dict, optional
        WavLM regularisation settings overriding those of the architecture or checkpoint
        (:data:`~diarizen_lab.models.wavlm.TRAINING_FIELDS`: ``dropout``, ``layer_drop``, ``projection_dropout``,
        ...), e.g. ``{layer_drop = 0.0}``.
    layer_weighting : {"linear", "softmax"}
        How hidden states are combined (:class:`~diarizen_lab.models.layer_weighting.LayerWeighting`): upstream
        DiariZen's raw linear weights, or softmax-normalised weights (models written before this option).
    conformer_conv_norm : {"batch", "layer"}
        Normalisation in the Conformer convolution modules: upstream DiariZen's BatchNorm, or LayerNorm (models
        written before this option).
    **kwargs
        Conformer, powerset and input settings of
        :class:`~diarizen_lab.models.segmentation.PowersetSegmentationModel`.
    """

    def __init__(
        self,
        wavlm: str | dict[str, Any] | None = None,
        wavlm_checkpoint: str | None = None,
        freeze_wavlm: bool = False,
        wavlm_training: dict[str, float] | None = None,
        layer_weighting: str = "linear",
        conformer_conv_norm: str = "batch",
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
    ) -> None:
        training = dict(wavlm_training or {})
        invalid = sorted(set(training) - set(TRAINING_FIELDS))
        if invalid:
            raise DiarizenLabError(
                f"WavLMConformer: wavlm_training accepts {', '.join(TRAINING_FIELDS)}, got {', '.join(invalid)}"
            )
        if wavlm_checkpoint is not None:
            if wavlm is not None:
                raise DiarizenLabError(
                    f"WavLMConformer: set either wavlm (architecture, random weights) or wavlm_checkpoint "
                    f"(pretrained weights, architecture from the file), not both (got {wavlm_checkpoint!r})"
                )
            from diarizen_lab.store import resolve_asset  # only pretrained weights need the store

            encoder = load_wavlm(resolve_asset(wavlm_checkpoint), **training)
        elif isinstance(wavlm, dict):
            encoder = WavLM(WavLMConfig.from_dict(wavlm).with_training(**training))
        else:
            encoder = WavLM(get_preset(wavlm or "wavlm_base_plus").with_training(**training))
        super().__init__(
            encoder.config.embed_dim,
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
        self.wavlm = encoder
        self.layer_weighting = LayerWeighting(encoder.config.num_layers + 1, layer_weighting)
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
        # (regularisation overrides included)
        return {
            "wavlm": self.wavlm.config.to_dict(),
            "wavlm_checkpoint": None,
            "freeze_wavlm": self.freeze_wavlm,
            "wavlm_training": None,
            "layer_weighting": self.layer_weighting.mode,
        }

    def train(self, mode: bool = True) -> WavLMConformer:
        super().train(mode)
        if self.freeze_wavlm:
            self.wavlm.eval()
        return self

    def wavlm_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.wavlm.parameters() if p.requires_grad]
