"""Structured pruning of WavLM by distillation (DPHuBERT, Peng et al., 2023, "fine-tune before pruning").

Pipeline: :func:`extract_wavlm` takes the WavLM out of a fine-tuned diarization model (the teacher and the
student's starting point); :class:`PruningStudent` gates its conv channels, heads, attention layers, FFN units
and FFN layers with :class:`HardConcrete` gates; :class:`DistillPruneObjective` trains it with the shared
trainer (distillation + :class:`SparsityLagrangian`): a training config whose ``[objective]`` is this objective,
run by :func:`diarizen_lab.training.recipe.train`; ``average_checkpoints(..., mode="after_peak")`` of
:mod:`diarizen_lab.training.run_dir` averages the checkpoints after the loss peak; :func:`apply_pruning` slices
out the smaller WavLM (:func:`prune_student`) and measures it (:func:`pruning_report`;
:mod:`~diarizen_lab.pruning.complexity` counts parameters and MACs).
"""

from diarizen_lab.pruning.apply import (
    apply_pruning,
    architecture_summary,
    max_hidden_state_difference,
    prune_student,
    pruning_report,
)
from diarizen_lab.pruning.complexity import UnitKeep, full_keep, mac_counts, param_counts
from diarizen_lab.pruning.distill import HiddenStateDistillation
from diarizen_lab.pruning.extract import extract_wavlm
from diarizen_lab.pruning.hardconcrete import HardConcrete
from diarizen_lab.pruning.lagrangian import SparsityLagrangian
from diarizen_lab.pruning.objective import DistillPruneObjective
from diarizen_lab.pruning.student import UNIT_TYPES, PruningStudent

__all__ = [
    "UNIT_TYPES",
    "DistillPruneObjective",
    "HardConcrete",
    "HiddenStateDistillation",
    "PruningStudent",
    "SparsityLagrangian",
    "UnitKeep",
    "apply_pruning",
    "architecture_summary",
    "extract_wavlm",
    "full_keep",
    "mac_counts",
    "max_hidden_state_difference",
    "param_counts",
    "prune_student",
    "pruning_report",
]
