"""The student of distillation-based pruning: a WavLM whose prunable units are scaled by hard-concrete gates.

Unit types (``units``), each with one :class:`~diarizen_lab.pruning.hardconcrete.HardConcrete` per layer:

============  ===============================================  =====================================
unit type     one gate per                                      gate name in ``student.gates``
============  ===============================================  =====================================
``conv``      output channel of convolution ``i``               ``conv_{i}``
``head``      attention head of transformer layer ``l``         ``head_{l}``
``attlayer``  attention sublayer of layer ``l``                 ``attlayer_{l}``
``interm``    feed-forward intermediate unit of layer ``l``     ``interm_{l}``
``ffnlayer``  feed-forward sublayer of layer ``l``              ``ffnlayer_{l}``
============  ===============================================  =====================================

Before each forward pass the student draws every gate once (a sample in training, the deterministic mask in
evaluation, see :mod:`~diarizen_lab.pruning.hardconcrete`) and hands the masks to the WavLM's gate slots.

Mask-aware normalisation (``mask_aware_norms``, default on) makes physical pruning exact. A layer norm over
conv channels computes its statistics over every channel, so removing channels changes it. The student
therefore computes those statistics over the channels whose gate is non-zero: the layer norm inside each
convolution block of a layer-norm extractor, and the feature projection's layer norm after the last
convolution; for the last convolution the (soft) gate value scales the feature projection's normalised output
instead of the convolution output, where it can be folded into the layer norm's affine parameters. The group
norm of the default extractor normalises each channel on its own and needs nothing. With
``mask_aware_norms = false`` the student behaves like the original DPHuBERT recipe and physical pruning is
approximate wherever a layer norm sees pruned channels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from diarizen_lab.config import Asset
from diarizen_lab.models.wavlm.feature_extractor import ChannelLayerNorm
from diarizen_lab.models.wavlm_source import wavlm_encoder
from diarizen_lab.pruning.complexity import UnitKeep
from diarizen_lab.pruning.hardconcrete import HardConcrete

__all__ = ["UNIT_TYPES", "PruningStudent", "MaskSlot", "MaskedLayerNorm", "MaskedChannelLayerNorm"]

UNIT_TYPES = ("conv", "head", "attlayer", "interm", "ffnlayer")
DEFAULT_KEEP_PROB = 0.99


class MaskSlot(nn.Module):
    """Occupies a WavLM gate slot and returns the mask set for the current forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: Tensor | None = None

    def forward(self) -> Tensor:
        if self.mask is None:
            raise RuntimeError("gate masks are drawn by PruningStudent: call the student, not its WavLM")
        return self.mask


class MaskedLayerNorm(nn.LayerNorm):
    """Layer norm over the last dimension whose statistics use only the features where ``keep`` is 1; the
    output is multiplied by ``scale`` when set. With neither set it is a plain ``nn.LayerNorm``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep: Tensor | None = None
        self.scale: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.keep is None:
            y = super().forward(x)
        else:
            x = x.float()  # like layer_norm under autocast: statistics in float32
            keep = self.keep.float()
            count = keep.sum().clamp_min(1.0)
            mean = (x * keep).sum(-1, keepdim=True) / count
            centered = (x - mean) * keep
            variance = centered.pow(2).sum(-1, keepdim=True) / count
            y = centered * torch.rsqrt(variance + self.eps) * self.weight + self.bias
        if self.scale is not None:
            y = y * self.scale
        return y


class MaskedChannelLayerNorm(MaskedLayerNorm):
    """:class:`MaskedLayerNorm` over the channels of a ``(batch, channel, frame)`` tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _masked_copy(norm: nn.LayerNorm, cls: type[MaskedLayerNorm]) -> MaskedLayerNorm:
    masked = cls(norm.normalized_shape, eps=norm.eps, elementwise_affine=True)
    masked.load_state_dict(norm.state_dict())
    return masked


class PruningStudent(nn.Module):
    """A gated WavLM plus optional prediction heads: the model trained by distillation-based pruning.

    ``forward`` returns the student's hidden states at ``distill_layers`` (through the prediction heads when
    there are any), for the distillation loss; :meth:`hidden_states` returns all of them.

    Parameters
    ----------
    wavlm : str or dict, optional
        Architecture with random weights: ``"random:<preset>"`` or a ``WavLMConfig`` dict.
    wavlm_checkpoint : Asset, optional
        Starting weights (any WavLM file), the architecture read from the file. With neither set, the
        distill-prune objective supplies its teacher (the student starts as a copy of the teacher).
    units : sequence of str
        Unit types to gate (see the module docstring); empty for plain distillation of a fixed architecture.
    init_keep_prob : mapping of str to float
        Initial ``P(gate > 0)`` per unit type (default 0.99 for every type).
    distill_layers : sequence of int
        Hidden-state indices returned by ``forward``.
    prediction_heads : bool
        Add a ``Linear(embed_dim, embed_dim)`` per distilled layer, initialised to the identity.
    mask_aware_norms : bool
        Layer-norm statistics over kept channels only (see the module docstring).
    """

    def __init__(
        self,
        wavlm: str | dict[str, Any] | None = None,
        wavlm_checkpoint: Asset | None = None,
        units: Sequence[str] = UNIT_TYPES,
        init_keep_prob: Mapping[str, float] | None = None,
        distill_layers: Sequence[int] = (4, 8, 12),
        prediction_heads: bool = False,
        mask_aware_norms: bool = True,
    ) -> None:
        super().__init__()
        unknown = sorted(set(units) - set(UNIT_TYPES))
        if unknown:
            raise ValueError(f"unknown unit type(s) {unknown}; choose from {list(UNIT_TYPES)}")
        init_keep_prob = dict(init_keep_prob or {})
        unknown = sorted(set(init_keep_prob) - set(UNIT_TYPES))
        if unknown:
            raise ValueError(f"init_keep_prob has unknown unit type(s) {unknown}; choose from {list(UNIT_TYPES)}")
        encoder = wavlm_encoder(wavlm, wavlm_checkpoint, owner="PruningStudent", layer_drop=0.0)
        config = encoder.config
        bad = [layer for layer in distill_layers if not 0 <= layer <= config.num_layers]
        if bad or not distill_layers:
            raise ValueError(
                f"distill_layers must be non-empty indices in [0, {config.num_layers}], got {list(distill_layers)}"
            )

        self.wavlm = encoder
        self.units = [unit for unit in UNIT_TYPES if unit in units]
        self.init_keep_prob = {unit: init_keep_prob.get(unit, DEFAULT_KEEP_PROB) for unit in self.units}
        self.distill_layers = list(distill_layers)
        self.mask_aware_norms = mask_aware_norms
        self.gates = nn.ModuleDict()
        self._slots: dict[str, MaskSlot] = {}
        self._attach_gates()
        self.prediction_heads = None
        if prediction_heads:
            self.prediction_heads = nn.ModuleList(
                nn.Linear(config.embed_dim, config.embed_dim) for _ in self.distill_layers
            )
            for head in self.prediction_heads:
                nn.init.eye_(head.weight)
                nn.init.zeros_(head.bias)

    # ------------------------------------------------------------------------------------------------------
    # Gates

    def _gate(self, name: str, unit: str, size: int) -> None:
        self.gates[name] = HardConcrete(size, init_keep_prob=self.init_keep_prob[unit])

    def _slot(self, name: str, owner: nn.Module, attribute: str) -> None:
        slot = MaskSlot()
        setattr(owner, attribute, slot)
        self._slots[name] = slot

    def _attach_gates(self) -> None:
        config = self.wavlm.config
        if "conv" in self.units:
            conv_layers = self.wavlm.feature_extractor.layers
            for index, (layer, (channels, _, _)) in enumerate(zip(conv_layers, config.conv_layers)):
                self._gate(f"conv_{index}", "conv", channels)
                self._slot(f"conv_{index}", layer, "gate")
                if self.mask_aware_norms and isinstance(layer.norm, ChannelLayerNorm):
                    layer.norm = _masked_copy(layer.norm, MaskedChannelLayerNorm)
            if self.mask_aware_norms:
                projection = self.wavlm.feature_projection
                projection.layer_norm = _masked_copy(projection.layer_norm, MaskedLayerNorm)
        for index, layer in enumerate(self.wavlm.encoder.layers):
            sublayers = ((layer.attention, "head", "attlayer"), (layer.feed_forward, "interm", "ffnlayer"))
            for sublayer, unit, whole in sublayers:
                if sublayer is None:
                    continue
                if unit in self.units:
                    size = sublayer.num_heads if unit == "head" else sublayer.intermediate.out_features
                    self._gate(f"{unit}_{index}", unit, size)
                    self._slot(f"{unit}_{index}", sublayer, "gate")
                if whole in self.units:
                    self._gate(f"{whole}_{index}", whole, 1)
                if unit in self.units or whole in self.units:
                    # also needed without a layer gate: a sublayer whose units are all off must add nothing
                    self._slot(f"{whole}_{index}", sublayer, "output_gate")

    def gate_parameters(self) -> list[nn.Parameter]:
        """The ``log_alpha`` of every gate."""
        return list(self.gates.parameters())

    def masks(self) -> dict[str, Tensor]:
        """One draw of every gate (samples in training mode, deterministic masks in eval mode); scalar gates
        (``attlayer``, ``ffnlayer``) as 0-dim tensors."""
        masks = {}
        for name, gate in self.gates.items():
            mask = gate()
            masks[name] = mask.reshape(()) if name.startswith(("attlayer_", "ffnlayer_")) else mask
        return masks

    def _set_masks(self, masks: Mapping[str, Tensor] | None) -> None:
        """Hand ``masks`` to the gate slots and masked norms (``None`` clears them).

        A sublayer's output is scaled by its layer gate (1 when not gated) times whether any of its heads or
        units is on: with all of them off the sublayer would still add its output bias, which the pruned model,
        where the sublayer is gone, does not.
        """
        for name, slot in self._slots.items():
            slot.mask = None if masks is None else self._slot_mask(name, masks)
        if "conv" not in self.units or not self.mask_aware_norms:
            return
        layers = self.wavlm.feature_extractor.layers
        last = len(layers) - 1
        for index, layer in enumerate(layers):
            mask = None if masks is None else masks[f"conv_{index}"]
            keep = None if mask is None else (mask > 0).to(mask.dtype)
            if isinstance(layer.norm, MaskedLayerNorm):
                layer.norm.keep = keep
            if index == last:
                # the soft value moves behind the projection's layer norm, where it can be folded
                self._slots[f"conv_{index}"].mask = keep
                self.wavlm.feature_projection.layer_norm.keep = keep
                self.wavlm.feature_projection.layer_norm.scale = mask

    @staticmethod
    def _slot_mask(name: str, masks: Mapping[str, Tensor]) -> Tensor:
        kind, index = name.rsplit("_", 1)
        if kind not in ("attlayer", "ffnlayer"):
            return masks[name]
        units = masks.get(f"{'head' if kind == 'attlayer' else 'interm'}_{index}")
        value = masks.get(name)
        if units is None:
            return value
        any_on = (units > 0).any().to(units.dtype)
        return any_on if value is None else value * any_on

    def unit_keep(self) -> UnitKeep:
        """``P(gate > 0)`` of every unit (1 for ungated units): differentiable input of the size formulas."""
        return self._keep(lambda gate: gate.keep_prob())

    @torch.no_grad()
    def deterministic_keep(self) -> UnitKeep:
        """0/1 indicators of the units the deterministic masks keep (what physical pruning will keep)."""
        return self._keep(lambda gate: (gate.deterministic_mask() > 0).to(gate.log_alpha.dtype))

    def _keep(self, of_gate: Callable[[HardConcrete], Tensor]) -> UnitKeep:
        config = self.wavlm.config
        device = next(self.parameters()).device

        def get(name: str, size: int) -> Tensor:
            gate = self.gates[name] if name in self.gates else None
            if gate is None:
                return torch.ones(size, device=device)
            return of_gate(gate)

        return UnitKeep(
            conv=[get(f"conv_{i}", c) for i, (c, _, _) in enumerate(config.conv_layers)],
            heads=[get(f"head_{l}", h) for l, h in enumerate(config.num_heads)],
            attlayer=[get(f"attlayer_{l}", 1).reshape(()) for l in range(config.num_layers)],
            interm=[get(f"interm_{l}", f) for l, f in enumerate(config.ffn_dims)],
            ffnlayer=[get(f"ffnlayer_{l}", 1).reshape(()) for l in range(config.num_layers)],
        )

    # ------------------------------------------------------------------------------------------------------
    # Forward

    def hidden_states(self, waveforms: Tensor, lengths: Tensor | None = None) -> list[Tensor]:
        """All hidden states of the gated WavLM (see :meth:`WavLM.forward`), gates drawn once for this pass."""
        if waveforms.dim() == 3:
            waveforms = waveforms[:, 0]
        self._set_masks(self.masks())
        try:
            return self.wavlm(waveforms, lengths)
        finally:
            self._set_masks(None)

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None) -> list[Tensor]:
        """Hidden states at ``distill_layers`` (through the prediction heads), for ``(batch, sample)`` or
        ``(batch, 1, sample)`` waveforms."""
        hidden = self.hidden_states(waveforms, lengths)
        selected = [hidden[layer] for layer in self.distill_layers]
        if self.prediction_heads is not None:
            selected = [head(state) for head, state in zip(self.prediction_heads, selected)]
        return selected

    # ------------------------------------------------------------------------------------------------------
    # Model file

    def architecture(self) -> dict[str, Any]:
        """``{"path", "args"}`` rebuilding this student (random weights, no pretrained file needed)."""
        return {
            "path": f"{type(self).__module__}.{type(self).__qualname__}",
            "args": {
                "wavlm": self.wavlm.config.to_dict(),
                "wavlm_checkpoint": None,
                "units": list(self.units),
                "init_keep_prob": dict(self.init_keep_prob),
                "distill_layers": list(self.distill_layers),
                "prediction_heads": self.prediction_heads is not None,
                "mask_aware_norms": self.mask_aware_norms,
            },
        }
