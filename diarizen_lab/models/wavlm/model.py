"""WavLM speech encoder returning every hidden state, with pyannote-style frame geometry."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from diarizen_lab.models.wavlm.config import WavLMConfig
from diarizen_lab.models.wavlm.encoder import Encoder
from diarizen_lab.models.wavlm.feature_extractor import (
    FeatureExtractor,
    FeatureProjection,
    conv_frame_lengths,
    conv_num_frames,
    conv_receptive_field,
)


def normalize_waveforms(waveforms: Tensor, lengths: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Each ``(batch, sample)`` waveform at zero mean and unit variance over its first ``lengths`` samples
    (all of them by default), like a layer norm without affine parameters; padding is set to zero."""
    if lengths is None:
        return F.layer_norm(waveforms, waveforms.shape[-1:], eps=eps)
    valid = torch.arange(waveforms.size(-1), device=waveforms.device)[None, :] < lengths.to(waveforms.device)[:, None]
    count = valid.sum(-1, keepdim=True).clamp(min=1)
    mean = (waveforms * valid).sum(-1, keepdim=True) / count
    variance = ((waveforms - mean) * valid).square().sum(-1, keepdim=True) / count
    return (waveforms - mean) * torch.rsqrt(variance + eps) * valid


class WavLM(nn.Module):
    """WavLM (Chen et al., 2022) built from a :class:`WavLMConfig`, pruned architectures included.

    Submodules: ``feature_extractor`` (convolutions), ``feature_projection``, ``encoder`` (positional
    convolution, ``rel_attn_embed`` and ``layers``). Its hidden states equal those of upstream DiariZen's WavLM
    and of the transformers and torchaudio implementations given the same weights (those two leave the waveform
    normalisation of ``normalize_waveform`` models to the caller; this model normalises itself, as upstream's).

    Gate slots for structured pruning: these attributes are ``None`` by default; when set to a module, it is
    called without argument and its output multiplies the tensor named here.

    - ``feature_extractor.layers[i].gate() -> (channels,)``: conv output channels, after the activation;
    - ``encoder.layers[i].attention.gate() -> (num_heads,)``: each head's context, before ``out_proj``;
    - ``encoder.layers[i].attention.output_gate() -> ()``: the attention sublayer output;
    - ``encoder.layers[i].feed_forward.gate() -> (ffn_dim,)``: intermediate units, after the activation;
    - ``encoder.layers[i].feed_forward.output_gate() -> ()``: the feed-forward sublayer output.

    A layer with ``num_heads[i] == 0`` (``ffn_dims[i] == 0``) has ``attention`` (``feed_forward``) set to
    ``None``: the sublayer adds nothing to the residual stream. A physically pruned model is a ``WavLM`` built
    from a config with the kept sizes (``conv_layers``, ``num_heads`` with ``head_indices``, ``ffn_dims``) and
    loaded with the sliced weights.
    """

    def __init__(self, config: WavLMConfig) -> None:
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureExtractor(
            config.conv_layers,
            config.extractor_mode,
            config.conv_bias,
            eps=config.layer_norm_eps,
            grad_mult=config.feature_grad_mult,
            output_scale=config.extractor_output_scale,
        )
        self.feature_projection = FeatureProjection(
            config.conv_layers[-1][0], config.embed_dim, config.projection_dropout, eps=config.layer_norm_eps
        )
        self.encoder = Encoder(config)

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None) -> list[Tensor]:
        """Hidden states of a batch of 16 kHz waveforms.

        Parameters
        ----------
        waveforms : (batch, sample) Tensor
        lengths : (batch,) Tensor, optional
            Valid samples of each waveform; frames computed from padding are excluded from attention (and
            padding from waveform normalisation).

        Returns
        -------
        hidden_states : list of ``num_layers + 1`` Tensors of shape (batch, frame, embed_dim)
            The input of the first transformer layer (after the positional convolution), then the output of
            each layer (as transformers' ``output_hidden_states=True``; a pre-norm model's final layer norm is
            not applied).
        """
        if waveforms.dim() != 2:
            raise ValueError(f"WavLM expects (batch, sample) waveforms, got shape {tuple(waveforms.shape)}")
        if self.config.normalize_waveform:
            waveforms = normalize_waveforms(waveforms, lengths, self.config.layer_norm_eps)
        features = self.feature_extractor(waveforms).transpose(1, 2)
        x = self.feature_projection(features)
        padding_mask = None
        if lengths is not None:
            frame_lengths = conv_frame_lengths(lengths.to(x.device), self.config.conv_layers)
            if bool((frame_lengths == 0).any()):
                raise ValueError(
                    f"every waveform needs at least {self.receptive_field_size()} valid samples, got lengths "
                    f"{lengths.tolist()}"
                )
            padding_mask = torch.arange(x.size(1), device=x.device)[None, :] >= frame_lengths[:, None]
        return self.encoder(x, padding_mask)

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for ``num_samples`` input samples."""
        return conv_num_frames(num_samples, self.config.conv_layers)

    def receptive_field_size(self, num_frames: int = 1) -> int:
        """Number of input samples seen by ``num_frames`` consecutive output frames."""
        first, last = conv_receptive_field(0, num_frames, self.config.conv_layers)
        return last - first + 1

    def receptive_field_center(self, frame: int = 0) -> int:
        """Input sample at the center of the receptive field of output frame ``frame``."""
        first, last = conv_receptive_field(frame, 1, self.config.conv_layers)
        return (first + last) // 2
