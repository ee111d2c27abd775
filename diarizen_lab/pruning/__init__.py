"""Structured pruning of WavLM by distillation (DPHuBERT, Peng et al., 2023, "fine-tune before pruning").

Pipeline: :func:`extract_wavlm` takes the WavLM out of a fine-tuned diarization model (the teacher and the
student's starting point); :class:`PruningStudent` gates its conv channels, heads, attention layers, FFN units
and FFN layers with :class:`HardConcrete` gates; :class:`DistillPruneObjective` trains it with the shared
trainer (distillation + :class:`SparsityLagrangian`); :func:`average_after_peak` averages the checkpoints after
the loss peak; :func:`prune_student` slices out the smaller WavLM and :func:`pruning_report` measures it
(:mod:`~diarizen_lab.pruning.complexity` counts parameters and MACs).
"""

from diarizen_lab.pruning.apply import architecture_summary, max_hidden_state_difference, prune_student, pruning_report
from diarizen_lab.pruning.complexity import UnitKeep, full_keep, mac_counts, param_counts
from diarizen_lab.pruning.distill import HiddenStateDistillation
from diarizen_lab.pruning.extract import extract_wavlm
from diarizen_lab.pruning.hardconcrete import HardConcrete
from diarizen_lab.pruning.lagrangian import SparsityLagrangian
from diarizen_lab.pruning.objective import DistillPruneObjective
from diarizen_lab.pruning.selection import average_after_peak, select_after_peak
from diarizen_lab.pruning.student import UNIT_TYPES, PruningStudent

__all__ = [
    "UNIT_TYPES",
    "DistillPruneObjective",
    "HardConcrete",
    "HiddenStateDistillation",
    "PruningStudent",
    "SparsityLagrangian",
    "UnitKeep",
    "architecture_summary",
    "average_after_peak",
    "extract_wavlm",
    "full_keep",
    "mac_counts",
    "max_hidden_state_difference",
    "param_counts",
    "prune_student",
    "pruning_report",
    "select_after_peak",
]
