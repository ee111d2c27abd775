"""Layer-to-layer distillation loss between a student's predictions and a teacher's hidden states."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HiddenStateDistillation"]


class HiddenStateDistillation(nn.Module):
    """Weighted L1 + L2 + cosine loss between paired student predictions and teacher hidden states.

    For each pair ``(p, y)`` of ``(batch, frame, dim)`` tensors and each frame::

        l1_weight * mean_d |p - y|  +  l2_weight * mean_d (p - y)^2  +  cos_weight * c(p, y)

    where ``c`` is ``1 - cos(p, y)`` (``cosine_type = "distance"``) or ``-log sigmoid(cos(p, y))``
    (``"log_sigmoid"``, as in DistilHuBERT and DPHuBERT). Each term is averaged over frames and summed
    over the pairs.
    """

    #: the names of the unweighted parts :meth:`forward` returns
    PARTS = ("l1", "l2", "cos")

    def __init__(
        self,
        l1_weight: float = 1.0,
        l2_weight: float = 0.0,
        cos_weight: float = 1.0,
        cosine_type: Literal["distance", "log_sigmoid"] = "log_sigmoid",
    ) -> None:
        super().__init__()
        if cosine_type not in ("distance", "log_sigmoid"):
            raise ValueError(f"cosine_type must be 'distance' or 'log_sigmoid', got {cosine_type!r}.")
        if min(l1_weight, l2_weight, cos_weight) < 0 or l1_weight + l2_weight + cos_weight == 0:
            raise ValueError("distillation weights must be >= 0 and not all 0")
        self.l1_weight = l1_weight
        self.l2_weight = l2_weight
        self.cos_weight = cos_weight
        self.cosine_type = cosine_type

    def forward(self, predictions: Sequence[Tensor], targets: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the total loss and its unweighted parts ``l1``, ``l2``, ``cos`` (summed over pairs)."""
        if len(predictions) != len(targets) or not predictions:
            raise ValueError(f"need as many predictions as targets (got {len(predictions)} and {len(targets)})")
        zero = predictions[0].new_zeros((), dtype=torch.float32)
        parts = dict.fromkeys(self.PARTS, zero)
        for prediction, target in zip(predictions, targets):
            prediction, target = prediction.float(), target.detach().float()
            difference = prediction - target
            cosine = F.cosine_similarity(prediction, target, dim=-1)
            terms = {
                "l1": difference.abs().mean(dim=-1),
                "l2": difference.pow(2).mean(dim=-1),
                "cos": 1.0 - cosine if self.cosine_type == "distance" else -F.logsigmoid(cosine),
            }
            for name, value in terms.items():
                parts[name] = parts[name] + value.mean()
        total = self.l1_weight * parts["l1"] + self.l2_weight * parts["l2"] + self.cos_weight * parts["cos"]
        return total, parts
