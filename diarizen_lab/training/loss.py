"""Permutation-invariant training loss on powerset classes.

The reference speakers of a chunk are in arbitrary order, so the target is first permuted to best match the
prediction (pyannote.audio's ``permutate`` on the hard multi-label decisions), then mapped to the powerset
class of each frame and scored with the negative log-likelihood of the model's log-probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyannote.audio.utils.permutation import permutate
from pyannote.audio.utils.powerset import Powerset


def powerset_targets(log_probs: torch.Tensor, target: torch.Tensor, powerset: Powerset) -> torch.Tensor:
    """Powerset class index of each frame for the speaker permutation closest to the prediction.

    Args:
        log_probs: ``(batch, frame, num_powerset_classes)`` model output.
        target: ``(batch, frame, speaker)`` 0/1 reference activity.

    Returns:
        ``(batch, frame)`` class indices (long).
    """
    multilabel = powerset.to_multilabel(log_probs)
    permuted_target, _ = permutate(multilabel, target.float())
    return torch.argmax(powerset.to_powerset(permuted_target), dim=-1)


def powerset_nll(
    log_probs: torch.Tensor, target: torch.Tensor, powerset: Powerset, reduction: str = "mean"
) -> torch.Tensor:
    """Permutation-invariant negative log-likelihood (``reduction``: ``mean``/``sum`` over frames, or ``none``)."""
    classes = powerset_targets(log_probs, target, powerset)
    return F.nll_loss(log_probs.transpose(1, 2), classes, reduction=reduction)
