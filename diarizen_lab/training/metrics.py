"""Chunk-level diarization error counts, summed so that rates are exact over a whole validation set.

Rates are ratios of sums (error frames / reference speech frames over every chunk of every process), never
means of per-batch rates. Counting is pyannote.audio's (optimal speaker mapping per chunk, hard powerset
decisions binarised at 0.5).
"""

from __future__ import annotations

import torch
from pyannote.audio.torchmetrics.functional.audio.diarization_error_rate import diarization_error_rate
from pyannote.audio.utils.powerset import Powerset

#: The error counts returned by :func:`der_counts`.
DER_COUNTS = ("false_alarm", "missed_detection", "confusion", "speech")
#: the names of :func:`der_rates`
DER_RATES = ("der", "miss", "fa", "confusion")


def der_counts(
    log_probs: torch.Tensor, target: torch.Tensor, powerset: Powerset, threshold: float = 0.5
) -> dict[str, torch.Tensor]:
    """False-alarm, missed and confused speaker-frames, and reference speaker-frames, summed over the batch.

    Args:
        log_probs: ``(batch, frame, num_powerset_classes)`` model output.
        target: ``(batch, frame, speaker)`` 0/1 reference activity.
    """
    decisions = powerset.to_multilabel(log_probs)
    _, (false_alarm, missed, confusion, speech) = diarization_error_rate(
        decisions.transpose(1, 2),
        target.float().transpose(1, 2),
        threshold=threshold,
        reduce="batch",
        return_components=True,
    )
    return {"false_alarm": false_alarm, "missed_detection": missed, "confusion": confusion, "speech": speech}


def der_rates(counts: dict[str, float]) -> dict[str, float]:
    """``der``, ``miss``, ``fa`` and ``confusion`` as fractions of the reference speech."""
    speech = max(counts["speech"], 1e-8)
    errors = counts["false_alarm"] + counts["missed_detection"] + counts["confusion"]
    rates = (errors, counts["missed_detection"], counts["false_alarm"], counts["confusion"])
    return {name: value / speech for name, value in zip(DER_RATES, rates)}
