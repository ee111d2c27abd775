"""The distill-and-prune objective for the shared trainer (DPHuBERT, Peng et al., 2023).

Loss of one batch: the distillation loss between the student's and the frozen teacher's hidden states, plus
the Lagrangian sparsity penalty (:class:`~diarizen_lab.pruning.lagrangian.SparsityLagrangian`) on the
student's expected sparsity ``1 - E[params(student)] / params(teacher)``. Three optimizers move three kinds of
parameters at their own learning rates: the configured ``[optimizer]`` the student's weights, and this
objective's own ``gates`` (the hard-concrete ``log_alpha``) and ``lambdas`` (gradient *ascent* on the two
multipliers). Neither of the last two is clipped with the model's gradients.

Logged: ``train/distill``, ``train/l1``, ``train/l2``, ``train/cos``, ``train/reg``, ``train/expected_sparsity``,
``train/target_sparsity``, ``train/lambda1``, ``train/lambda2`` (epoch means); ``val/loss`` (distillation loss of
the deterministic student) and its parts; and at each validation ``prune/expected_sparsity``,
``prune/sparsity`` (what ``diarizen-lab prune apply`` will achieve), ``prune/target_sparsity``, ``prune/lambda1``,
``prune/lambda2``, ``prune/params``, ``prune/gmacs_per_second``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from accelerate.utils import extract_model_from_parallel
from torch import Tensor, nn

from diarizen_lab.config import Asset
from diarizen_lab.data.task import Task
from diarizen_lab.models.wavlm_source import wavlm_encoder
from diarizen_lab.pruning.complexity import full_keep, mac_counts, param_counts
from diarizen_lab.pruning.distill import HiddenStateDistillation
from diarizen_lab.pruning.lagrangian import SparsityLagrangian
from diarizen_lab.pruning.student import PruningStudent
from diarizen_lab.training.objective import Batch, NamedOptimizer, Objective

__all__ = ["DistillPruneObjective"]

TEACHER_PREFIX = "teacher."


class DistillPruneObjective(Objective):
    """Distillation from a frozen teacher, optionally with a sparsity target (pruning).

    Parameters
    ----------
    teacher : Asset
        The teacher WavLM (an asset name or path in the config; any format
        :func:`~diarizen_lab.models.wavlm.load_wavlm` reads). It is frozen, always in eval mode, and not saved
        in checkpoints. A student that names no WavLM of its own starts as a copy of it
        (:meth:`model_arguments`), so a config names the teacher once.
    teacher_layers : sequence of int
        Teacher hidden states matched, in order, with the student's ``distill_layers``.
    target_sparsity : float, optional
        Final pruned fraction of the teacher's parameters; ``None`` distils without pruning.
    warmup_steps : int
        Updates over which the target grows linearly from 0.
    gate_lr : float
        Adam learning rate of the gates' ``log_alpha``.
    lambda_lr : float
        Learning rate of the multipliers' gradient ascent (plain SGD: each step moves ``lambda1`` by
        ``lambda_lr`` times the sparsity gap, so the multipliers settle when the target is met).
    lambda2_init : float
        Initial quadratic multiplier (see :mod:`~diarizen_lab.pruning.lagrangian`).
    l1_weight, l2_weight, cos_weight, cosine_type
        Distillation loss (:class:`~diarizen_lab.pruning.distill.HiddenStateDistillation`).
    task : Task
        Its sample rate is that of the MAC counts (supplied by the recipe).
    """

    #: distillation matches hidden states: the datasets need no labels
    uses_labels = False

    def __init__(
        self,
        teacher: Asset,
        teacher_layers: Sequence[int] = (4, 8, 12),
        target_sparsity: float | None = None,
        warmup_steps: int = 0,
        gate_lr: float = 0.02,
        lambda_lr: float = 0.02,
        lambda2_init: float = 0.0,
        l1_weight: float = 1.0,
        l2_weight: float = 0.0,
        cos_weight: float = 1.0,
        cosine_type: Literal["distance", "log_sigmoid"] = "log_sigmoid",
        *,
        task: Task,
    ) -> None:
        super().__init__()
        self.teacher_path = teacher
        self.sample_rate = task.sample_rate
        encoder = wavlm_encoder(None, teacher, owner="DistillPruneObjective", layer_drop=0.0)
        self.teacher = encoder.eval().requires_grad_(False)
        config = self.teacher.config
        bad = [layer for layer in teacher_layers if not 0 <= layer <= config.num_layers]
        if bad or not teacher_layers:
            raise ValueError(
                f"teacher_layers must be non-empty indices in [0, {config.num_layers}], got {list(teacher_layers)}"
            )
        self.teacher_layers = list(teacher_layers)
        self.teacher_params = float(sum(param_counts(config, full_keep(config)).values()))
        self.distillation = HiddenStateDistillation(l1_weight, l2_weight, cos_weight, cosine_type)
        self.lagrangian = None
        if target_sparsity is not None:
            self.lagrangian = SparsityLagrangian(target_sparsity, warmup_steps, lambda2_init)
        self.gate_lr = gate_lr
        self.lambda_lr = lambda_lr
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        # the teacher is an input, not state: keep it out of saved and loaded training states
        self.register_state_dict_post_hook(_drop_teacher)
        self.register_load_state_dict_post_hook(_ignore_missing_teacher)

    def model_arguments(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The teacher as the student's starting weights, unless the ``[model]`` block names a WavLM."""
        if args.get("wavlm") is not None or args.get("wavlm_checkpoint") is not None:
            return {}
        return {"wavlm_checkpoint": self.teacher_path}

    def train(self, mode: bool = True) -> DistillPruneObjective:
        super().train(mode)
        self.teacher.eval()
        return self

    # ------------------------------------------------------------------------------------------------------
    # Trainer hooks

    def optimizers(self, model: nn.Module) -> list[NamedOptimizer]:
        student = _student(model)
        self._check_student(student)
        gates = student.gate_parameters()
        if not gates:
            return []
        optimizers = [NamedOptimizer("gates", torch.optim.Adam(gates, lr=self.gate_lr), clip=False)]
        if self.lagrangian is not None:
            ascent = torch.optim.SGD(self.lagrangian.parameters(), lr=self.lambda_lr, maximize=True)
            optimizers.append(NamedOptimizer("lambdas", ascent, clip=False))
        return optimizers

    def training_step(self, model: nn.Module, batch: Batch) -> dict[str, Tensor]:
        waveforms = _mono(batch["waveform"])
        predictions = model(waveforms)
        distill, parts = self._distill(predictions, waveforms)
        terms = {"distill": distill, **parts}
        loss = distill
        student = _student(model)
        if self.lagrangian is not None and len(student.gates):
            expected = self.expected_sparsity(student)
            reg = self.lagrangian(expected, int(self.step))
            loss = loss + reg
            terms.update(
                reg=reg,
                expected_sparsity=expected,
                target_sparsity=torch.tensor(self.lagrangian.target(int(self.step)), device=distill.device),
                lambda1=self.lagrangian.lambda1,
                lambda2=self.lagrangian.lambda2,
            )
        return {"loss": loss, **{name: value.detach() for name, value in terms.items()}}

    def on_update(self, step: int) -> None:
        self.step.fill_(step)

    @torch.no_grad()
    def validation_step(self, model: nn.Module, batch: Batch) -> dict[str, Tensor]:
        waveforms = _mono(batch["waveform"])
        distill, parts = self._distill(model(waveforms), waveforms)
        count = torch.tensor(float(waveforms.shape[0]), device=distill.device)
        sums = {f"{name}_sum": value * count for name, value in parts.items()}
        return {"loss_sum": distill * count, **sums, "count": count}

    def validation_metrics(self, counts: dict[str, float]) -> dict[str, float]:
        count = counts["count"]
        return {name.removesuffix("_sum"): value / count for name, value in counts.items() if name != "count"}

    @torch.no_grad()
    def epoch_metrics(self, model: nn.Module) -> dict[str, float]:
        student = _student(model)
        config = student.wavlm.config
        deterministic = student.deterministic_keep()
        params = float(sum(param_counts(config, deterministic).values()))
        macs = float(sum(mac_counts(config, deterministic, sample_rate=self.sample_rate).values()))
        metrics = {
            "prune/params": params,
            "prune/sparsity": 1.0 - params / self.teacher_params,
            "prune/gmacs_per_second": macs / 1e9,
        }
        if self.lagrangian is not None and len(student.gates):
            metrics.update({
                "prune/expected_sparsity": float(self.expected_sparsity(student)),
                "prune/target_sparsity": self.lagrangian.target(int(self.step)),
                "prune/lambda1": float(self.lagrangian.lambda1),
                "prune/lambda2": float(self.lagrangian.lambda2),
            })
        return metrics

    # ------------------------------------------------------------------------------------------------------

    def expected_sparsity(self, student: PruningStudent) -> Tensor:
        """``1 - E[params(student)] / params(teacher)``, differentiable in the gates."""
        expected = sum(param_counts(student.wavlm.config, student.unit_keep()).values())
        return 1.0 - expected / self.teacher_params

    def _distill(self, predictions: list[Tensor], waveforms: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            hidden = self.teacher(waveforms)
        targets = [hidden[layer] for layer in self.teacher_layers]
        return self.distillation(predictions, targets)

    def _check_student(self, student: PruningStudent) -> None:
        if len(student.distill_layers) != len(self.teacher_layers):
            raise ValueError(
                f"the student distils {len(student.distill_layers)} layers {student.distill_layers} but the "
                f"objective has {len(self.teacher_layers)} teacher_layers {self.teacher_layers}"
            )
        if student.wavlm.config.embed_dim != self.teacher.config.embed_dim:
            raise ValueError(
                f"student width {student.wavlm.config.embed_dim} != teacher width {self.teacher.config.embed_dim}"
            )


def _student(model: nn.Module) -> PruningStudent:
    student = extract_model_from_parallel(model)
    if not isinstance(student, PruningStudent):
        raise TypeError(f"DistillPruneObjective trains a PruningStudent, got {type(student).__name__}")
    return student


def _mono(waveforms: Tensor) -> Tensor:
    return waveforms[:, 0] if waveforms.dim() == 3 else waveforms


def _drop_teacher(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for key in [key for key in state_dict if key.startswith(prefix + TEACHER_PREFIX)]:
        del state_dict[key]


def _ignore_missing_teacher(module: nn.Module, incompatible_keys: Any) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [key for key in missing if not key.startswith(TEACHER_PREFIX)]
