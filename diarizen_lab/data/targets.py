"""From multi-label chunk labels to the powerset targets of a permutation-invariant loss.

A powerset model predicts, per frame, one class among the sets of at most ``max_speakers_per_frame`` active
speakers. Chunk labels name speakers in an arbitrary order, so the trainer first permutes each chunk's label
columns to best match the prediction (``pyannote.audio.utils.permutation.permutate``), then encodes the
permuted labels as powerset classes (``pyannote.audio.utils.powerset.Powerset.to_powerset``)::

    powerset = Powerset(max_speakers_per_chunk, max_speakers_per_frame)
    scores = model(batch["waveform"])                       # (B, F, powerset.num_powerset_classes)
    targets = powerset_targets(powerset, scores, batch["labels"])
    loss = torch.nn.functional.nll_loss(scores.transpose(1, 2), targets.argmax(dim=-1))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from pyannote.audio.utils.powerset import Powerset


def powerset_targets(powerset: Powerset, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One-hot powerset targets ``(B, F, num_powerset_classes)`` for log-probabilities ``scores``
    ``(B, F, num_powerset_classes)`` and 0/1 ``labels`` ``(B, F, num_speakers)``.

    The label columns of each chunk are permuted to match the speakers decoded from ``scores`` (mean
    squared error), so the targets do not depend on the order of the label columns.
    """
    from pyannote.audio.utils.permutation import permutate

    predicted = powerset.to_multilabel(scores)
    permuted, _ = permutate(predicted, labels.float())
    return powerset.to_powerset(permuted.float())
