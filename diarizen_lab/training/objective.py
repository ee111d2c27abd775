"""What the trainer optimises and reports: the extension point shared by the training and pruning recipes.

A training config names its objective in an ``[objective]`` block (default: :class:`PowersetObjective`); the
recipe builds it before the model and hands it to :class:`~diarizen_lab.training.loop.Trainer`. The recipe
reads :attr:`Objective.uses_labels` (datasets without labels for objectives that ignore them) and
:meth:`Objective.model_arguments` (model arguments the objective supplies, e.g. a student's starting weights).
The trainer calls:

- :meth:`Objective.optimizers` once, before building the configured ``[optimizer*]`` sections: extra
  optimizers (their own parameter groups, learning rates and schedules, e.g. gate ``log_alpha`` parameters,
  or Lagrange multipliers updated by gradient ascent with ``maximize=True``). Model parameters they hold are
  left out of the configured optimizers;
- :meth:`Objective.training_step` on every micro-batch: ``{"loss": what is back-propagated, **terms}``; every
  entry is averaged over the epoch and logged as ``train/<name>`` (``loss`` as ``train/loss``);
- :meth:`Objective.on_update` after every applied optimizer update;
- :meth:`Objective.validation_step` on every validation batch: additive counts, summed over batches and
  processes, then turned into metrics by :meth:`Objective.validation_metrics` (logged as ``val/<name>``);
- :meth:`Objective.epoch_metrics` at every validation, for metrics that are not sums over batches.

An objective is an ``nn.Module``: it moves to the training device with the model, and its ``state_dict``
(parameters, buffers, ``get_extra_state``) is saved in every checkpoint. Its parameters are not wrapped by
DDP: their gradients must be the same on every process (e.g. functions of synchronised model parameters).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import torch
from pyannote.audio.utils.powerset import Powerset
from torch import nn

from diarizen_lab.data.task import Task
from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.training.loss import powerset_nll
from diarizen_lab.training.metrics import DER_COUNTS, der_counts, der_rates
from diarizen_lab.training.optim import NamedOptimizer

Batch = dict[str, torch.Tensor]


class Objective(nn.Module, abc.ABC):
    """Base objective: no extra optimizers, hooks or metrics; subclasses define the loss and counts."""

    #: whether batches need frame labels (the datasets then get the model's frame geometry)
    uses_labels: bool = True

    def model_arguments(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments this objective supplies to the ``[model]`` block whose own arguments are ``args``."""
        return {}

    def optimizers(self, model: nn.Module) -> list[NamedOptimizer]:
        """Optimizers this objective adds (called once with the unwrapped model, on its training device)."""
        return []

    @abc.abstractmethod
    def training_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Scalar losses of one micro-batch; ``"loss"`` is back-propagated.

        ``model`` is the model to call, wrapped for DDP and mixed precision (its module is ``model.module``
        under DDP); validation hooks get the unwrapped model.
        """

    def on_update(self, step: int) -> None:
        """Called after optimizer update number ``step`` (1-based) was applied."""

    @abc.abstractmethod
    def validation_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Additive counts of one validation batch (the same keys for every batch)."""

    @abc.abstractmethod
    def validation_metrics(self, counts: dict[str, float]) -> dict[str, float]:
        """Metrics (without the ``val/`` prefix) from the counts summed over the whole validation set."""

    def epoch_metrics(self, model: nn.Module) -> dict[str, float]:
        """Extra metrics logged at every validation (full names, e.g. ``"prune/sparsity"``)."""
        return {}


class PowersetObjective(Objective):
    """Permutation-invariant powerset NLL; validation reports the loss and the chunk-level DER and its parts.

    Parameters
    ----------
    task : Task
        Its speaker counts define the powerset (supplied by the recipe).
    """

    def __init__(self, *, task: Task) -> None:
        super().__init__()
        self.powerset: Powerset = task.powerset()

    def training_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        log_probs = self._predict(model, batch)
        return {"loss": powerset_nll(log_probs, batch["labels"], self.powerset)}

    def validation_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        log_probs = self._predict(model, batch)
        labels = batch["labels"]
        loss_sum = powerset_nll(log_probs, labels, self.powerset, reduction="sum")
        frames = torch.tensor(float(labels.shape[0] * labels.shape[1]), device=log_probs.device)
        return {"loss_sum": loss_sum, "frames": frames, **der_counts(log_probs, labels, self.powerset)}

    def validation_metrics(self, counts: dict[str, float]) -> dict[str, float]:
        return {"loss": counts["loss_sum"] / counts["frames"], **der_rates({k: counts[k] for k in DER_COUNTS})}

    def _predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        log_probs = model(batch["waveform"])
        labels = batch["labels"]
        if log_probs.shape[:2] != labels.shape[:2] or log_probs.shape[-1] != self.powerset.num_powerset_classes:
            raise DiarizenLabError(
                f"model output {tuple(log_probs.shape)} does not match labels {tuple(labels.shape)} with "
                f"{self.powerset.num_powerset_classes} powerset classes: build the model, the objective and the "
                "datasets with one Task, and the datasets with the model's frame geometry (FrameGeometry.from_model)"
            )
        return log_probs
