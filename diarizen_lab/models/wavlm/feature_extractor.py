"""Convolutional waveform encoder of WavLM, its frame geometry, and the projection to the transformer width."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

ConvSpec = Sequence[tuple[int, int, int]]


def conv_num_frames(num_samples: int, conv_layers: ConvSpec) -> int:
    """Frames produced from ``num_samples`` samples by unpadded convolutions (0 when the input is too short)."""
    frames = num_samples
    for _, kernel, stride in conv_layers:
        frames = max((frames - kernel) // stride + 1, 0)
    return frames


def conv_frame_lengths(lengths: Tensor, conv_layers: ConvSpec) -> Tensor:
    """:func:`conv_num_frames` for a tensor of sample counts."""
    frames = lengths
    for _, kernel, stride in conv_layers:
        frames = torch.div(frames - kernel, stride, rounding_mode="floor").add(1).clamp(min=0)
    return frames


def conv_receptive_field(frame: int, num_frames: int, conv_layers: ConvSpec) -> tuple[int, int]:
    """First and last input sample seen by output frames ``frame`` to ``frame + num_frames - 1``."""
    first, last = frame, frame + num_frames - 1
    for _, kernel, stride in reversed(conv_layers):
        first, last = first * stride, last * stride + kernel - 1
    return first, last


class ChannelLayerNorm(nn.LayerNorm):
    """Layer norm over the channels of a ``(batch, channel, frame)`` tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvLayer(nn.Module):
    """Convolution, optional normalisation, GELU.

    Gate slot: ``gate() -> (channels,)`` scales the output channels after the activation.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool, norm: nn.Module | None
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.norm = norm
        self.gate: nn.Module | None = None
        nn.init.kaiming_normal_(self.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        x = F.gelu(x)
        if self.gate is not None:
            x = x * self.gate().unsqueeze(-1)
        return x


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


class FeatureExtractor(nn.Module):
    """Stack of :class:`ConvLayer` mapping ``(batch, sample)`` waveforms to ``(batch, channel, frame)``.

    ``mode="default"`` puts a group norm with one group per channel after the first convolution only;
    ``mode="layer_norm"`` puts a channel layer norm after every convolution. ``grad_mult`` scales the
    gradient reaching the convolutions (0 runs them without autograd). With ``output_scale``, the output is
    multiplied channel-wise by the fixed buffer ``output_scale`` (ones until weights are loaded).
    """

    def __init__(
        self,
        conv_layers: ConvSpec,
        mode: str,
        bias: bool,
        eps: float = 1e-5,
        grad_mult: float = 1.0,
        output_scale: bool = False,
    ) -> None:
        super().__init__()
        self.grad_mult = grad_mult
        self.output_scale: Tensor | None
        if output_scale:
            self.register_buffer("output_scale", torch.ones(conv_layers[-1][0]))
        else:
            self.output_scale = None
        layers = []
        in_channels = 1
        for index, (channels, kernel, stride) in enumerate(conv_layers):
            if mode == "layer_norm":
                norm = ChannelLayerNorm(channels, eps=eps)
            elif index == 0:
                norm = nn.GroupNorm(channels, channels, eps=eps)
            else:
                norm = None
            layers.append(ConvLayer(in_channels, channels, kernel, stride, bias, norm))
            in_channels = channels
        self.layers = nn.ModuleList(layers)

    def forward(self, waveforms: Tensor) -> Tensor:
        if waveforms.device.type == "cpu" and not torch.is_grad_enabled() and len(waveforms) > 1:
            # CPU inference: one waveform at a time, so that peak memory does not grow with the batch (the first
            # layers of Base+ hold about 0.1 GiB per 8 s window); on CPU this is no slower than batching
            return torch.cat([self._convolve(waveform[None]) for waveform in waveforms])
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.grad_mult > 0):
            x = self._convolve(waveforms)
        if self.grad_mult not in (0.0, 1.0) and x.requires_grad:
            x = _ScaleGradient.apply(x, self.grad_mult)
        return x

    def _convolve(self, waveforms: Tensor) -> Tensor:
        x = waveforms.unsqueeze(1)
        for layer in self.layers:
            x = layer(x)
        if self.output_scale is not None:
            x = x * self.output_scale.unsqueeze(-1)
        return x


class FeatureProjection(nn.Module):
    """Layer norm over extractor channels, linear map to the transformer width, dropout."""

    def __init__(self, in_features: int, out_features: int, dropout: float, eps: float = 1e-5) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_features, eps=eps)
        self.projection = nn.Linear(in_features, out_features)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Tensor) -> Tensor:
        """``(batch, frame, channel)`` -> ``(batch, frame, embed_dim)``."""
        return self.dropout(self.projection(self.layer_norm(features)))
