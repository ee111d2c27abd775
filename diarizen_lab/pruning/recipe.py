"""The distill-and-prune training recipe: the supervised recipe's sections plus ``[objective]``, run by the
same trainer (:func:`diarizen_lab.training.recipe.train`) with a
:class:`~diarizen_lab.pruning.objective.DistillPruneObjective`.

Layout of a config (see ``conf/prune_tiny.toml`` and ``conf/prune_s80_base.toml``)::

    [meta]                  name, exp_dir, seed
    [model]                 path = "diarizen_lab.pruning.PruningStudent" (wavlm_checkpoint, units, ...)
    [objective]             path = "diarizen_lab.pruning.DistillPruneObjective" (teacher, target_sparsity, ...)
    [train_dataset], [validation_dataset], [dataloader]   audio chunks (labels are not used)
    [optimizer], [scheduler]                              the student's weights
    [clipping], [trainer], [checkpoint]                   as for supervised training (monitor "val/loss")
"""

from __future__ import annotations

from pathlib import Path

from diarizen_lab.config import Block, Config, instantiate, load_config
from diarizen_lab.training.config_checks import check_optimizers
from diarizen_lab.training.loop import TrainerState
from diarizen_lab.training.settings import RUNTIME, SECTIONS

__all__ = ["PRUNING_SECTIONS", "load_pruning_config", "distill_prune"]

PRUNING_SECTIONS: dict[str, type] = {**SECTIONS, "objective": Block}


def load_pruning_config(path: Path, overrides: list[str] = ()) -> Config:
    """Load and validate a distill-prune config."""
    return check_optimizers(load_config(path, PRUNING_SECTIONS, overrides, runtime=RUNTIME))


def distill_prune(config: Config, resume: Path | bool | None = None, accept_changes: bool = False) -> TrainerState:
    """Run the distill-prune training described by ``config`` (``resume``, ``accept_changes`` as for supervised
    training)."""
    from diarizen_lab.training.recipe import train

    return train(config, resume, make_objective=lambda model: instantiate(config["objective"]),
                 accept_changes=accept_changes)
