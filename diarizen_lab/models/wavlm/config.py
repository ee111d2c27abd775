"""Architecture and regularisation settings of a (possibly pruned) WavLM encoder, and the standard presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: (channels, kernel, stride) of the seven convolutions shared by every released WavLM: 400-sample receptive
#: field, 320-sample step (20 ms at 16 kHz).
STANDARD_CONV_LAYERS: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2

EXTRACTOR_MODES = ("default", "layer_norm")

#: Fields that change training behaviour only; a checkpoint's weights fit any value of them.
TRAINING_FIELDS = (
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "projection_dropout",
    "layer_drop",
    "feature_grad_mult",
)


@dataclass
class WavLMConfig:
    """WavLM architecture, with per-layer sizes so that pruned models are described too.

    The defaults describe WavLM Base / Base+.

    Attributes
    ----------
    conv_layers : list of (channels, kernel, stride)
        Convolutional feature extractor, first layer first.
    extractor_mode : {"default", "layer_norm"}
        "default": group norm (one group per channel) after the first convolution only (Base, Base+);
        "layer_norm": layer norm over channels after every convolution (Large).
    conv_bias : bool
        Whether the extractor convolutions have a bias.
    normalize_waveform : bool
        Normalise each waveform to zero mean and unit variance (over its valid samples) before the extractor,
        as WavLM Large was trained (and as upstream DiariZen's WavLM does inside the model).
    extractor_output_scale : bool
        Multiply the extractor output channel-wise by a fixed vector ``feature_extractor.output_scale`` before
        the feature projection: the soft mask that upstream DiariZen's pruning leaves on the last convolution
        (its ``dummy_weight``). It cannot be folded into the neighbouring weights (a GELU precedes it, a layer
        norm follows it).
    embed_dim : int
        Transformer width.
    total_heads : int
        Number of attention heads of the unpruned model: the relative position embedding has one column per
        original head and ``head_dim = embed_dim // total_heads``.
    num_heads : list of int
        Heads kept in each transformer layer; 0 removes the attention sublayer.
    ffn_dims : list of int
        Feed-forward width of each transformer layer; 0 removes the feed-forward sublayer.
    head_indices : list of list of int, optional
        For each layer, the original indices (into ``range(total_heads)``) of its kept heads, in order. They
        select the relative position bias columns and the input slices used by the gated relative position
        bias. ``None`` means ``range(num_heads[i])``.
    layer_norm_first : bool
        Pre-norm transformer layers with a final layer norm (Large) instead of post-norm layers with a layer
        norm before the first layer (Base, Base+).
    pos_conv_kernel, pos_conv_groups : int
        Convolutional positional embedding.
    num_buckets, max_distance : int
        Relative position buckets (bidirectional) and the distance mapped to the last bucket.
    layer_norm_eps : float
        Epsilon of every normalisation layer.
    dropout, attention_dropout, activation_dropout, projection_dropout : float
        Dropout after each sublayer and on the encoder input, on attention weights, after the feed-forward
        activation, after the feature projection.
    layer_drop : float
        Probability of skipping a whole transformer layer while training.
    feature_grad_mult : float
        Scale of the gradient flowing into the convolutional extractor (0 freezes it and saves its memory).
    """

    conv_layers: list[tuple[int, int, int]] = field(default_factory=lambda: list(STANDARD_CONV_LAYERS))
    extractor_mode: str = "default"
    conv_bias: bool = False
    normalize_waveform: bool = False
    extractor_output_scale: bool = False
    embed_dim: int = 768
    total_heads: int = 12
    num_heads: list[int] = field(default_factory=lambda: [12] * 12)
    ffn_dims: list[int] = field(default_factory=lambda: [3072] * 12)
    head_indices: list[list[int]] | None = None
    layer_norm_first: bool = False
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    num_buckets: int = 320
    max_distance: int = 800
    layer_norm_eps: float = 1e-5
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    projection_dropout: float = 0.0
    layer_drop: float = 0.0
    feature_grad_mult: float = 1.0

    def __post_init__(self) -> None:
        self.conv_layers = [tuple(int(v) for v in layer) for layer in self.conv_layers]
        self.num_heads = [int(h) for h in self.num_heads]
        self.ffn_dims = [int(d) for d in self.ffn_dims]
        if self.head_indices is not None:
            self.head_indices = [[int(i) for i in indices] for indices in self.head_indices]
        self._validate()

    def _validate(self) -> None:
        def require(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(message)

        require(
            bool(self.conv_layers) and all(len(layer) == 3 and min(layer) >= 1 for layer in self.conv_layers),
            f"conv_layers must be (channels, kernel, stride) triples of positive ints, got {self.conv_layers}",
        )
        require(
            self.extractor_mode in EXTRACTOR_MODES,
            f"extractor_mode must be one of {EXTRACTOR_MODES}, got {self.extractor_mode!r}",
        )
        require(
            self.total_heads >= 1 and self.embed_dim % self.total_heads == 0,
            f"embed_dim ({self.embed_dim}) must be a multiple of total_heads ({self.total_heads})",
        )
        require(
            self.embed_dim % self.pos_conv_groups == 0,
            f"embed_dim ({self.embed_dim}) must be a multiple of pos_conv_groups ({self.pos_conv_groups})",
        )
        require(
            len(self.ffn_dims) == len(self.num_heads),
            f"num_heads and ffn_dims need one entry per layer, got {self.num_heads} and {self.ffn_dims}",
        )
        require(
            all(0 <= h <= self.total_heads for h in self.num_heads) and all(d >= 0 for d in self.ffn_dims),
            f"num_heads must lie in [0, {self.total_heads}] and ffn_dims be >= 0, got {self.num_heads} and "
            f"{self.ffn_dims}",
        )
        if self.head_indices is not None:
            require(
                len(self.head_indices) == self.num_layers,
                f"head_indices needs one list per layer ({self.num_layers}), got {len(self.head_indices)}",
            )
            for layer, (indices, heads) in enumerate(zip(self.head_indices, self.num_heads)):
                require(
                    len(indices) == heads
                    and all(0 <= i < self.total_heads for i in indices)
                    and sorted(set(indices)) == indices,
                    f"head_indices[{layer}] must be {heads} increasing indices in [0, {self.total_heads}), "
                    f"got {indices}",
                )
        require(
            self.num_buckets >= 4 and self.max_distance > self.num_buckets // 4,
            f"need num_buckets >= 4 and max_distance > num_buckets // 4, got {self.num_buckets} and "
            f"{self.max_distance}",
        )

    @property
    def num_layers(self) -> int:
        """Number of transformer layers."""
        return len(self.num_heads)

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.embed_dim // self.total_heads

    def layer_head_indices(self, layer: int) -> list[int]:
        """Original indices of the heads kept in transformer layer ``layer``."""
        if self.head_indices is None:
            return list(range(self.num_heads[layer]))
        return list(self.head_indices[layer])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-compatible dict (lists, no tuples, no ``None``)."""
        data = dataclasses.asdict(self)
        data["conv_layers"] = [list(layer) for layer in self.conv_layers]
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WavLMConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown WavLMConfig field(s): {', '.join(unknown)}")
        return cls(**data)

    def with_training(self, **settings: float) -> WavLMConfig:
        """Copy with other regularisation settings (only :data:`TRAINING_FIELDS` may change)."""
        invalid = sorted(set(settings) - set(TRAINING_FIELDS))
        if invalid:
            raise ValueError(f"only {', '.join(TRAINING_FIELDS)} can be overridden, got {', '.join(invalid)}")
        return dataclasses.replace(self, **settings)
