"""The config sections a training recipe accepts (see :mod:`diarizen_lab.training` for the TOML layout).

Block sections (``[model]``, datasets, optimizers) name a callable; the dataclasses below hold plain settings.
Each dataclass checks its own values so that a bad setting fails when the config is loaded, not mid-run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from diarizen_lab.config import Asset, Block
from diarizen_lab.data.task import TASK_KEYS, Task
from diarizen_lab.errors import DiarizenLabError


@dataclasses.dataclass
class Meta:
    """``[meta]``: the experiment's name, where it is written, and the seed of every random stream."""

    name: str
    exp_dir: Path = Path("exp")
    seed: int = 0

    @property
    def run_dir(self) -> Path:
        """``exp_dir/name``: the experiment directory."""
        return self.exp_dir / self.name


@dataclasses.dataclass
class DataLoaderSettings:
    """``[dataloader]``: batching and loading workers (shared by the training and validation loaders)."""

    batch_size: int = 8
    num_workers: int = 0
    pin_memory: bool = True
    persistent_workers: bool = True

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "dataloader", "batch_size must be >= 1")
        _require(self.num_workers >= 0, "dataloader", "num_workers must be >= 0")


@dataclasses.dataclass
class ScheduleSettings:
    """``[scheduler]``, ``[scheduler_small]``, ``[scheduler_big]``: the learning-rate multiplier per update.

    ``kind``: ``constant``; ``linear_warmup`` (0 -> 1 over ``warmup_steps``, then constant); ``warmup_cosine``
    and ``warmup_linear`` (warm-up, then cosine or linear decay to ``min_lr_ratio`` at the run's last update,
    ``max_epochs`` times the updates per epoch).
    """

    kind: Literal["constant", "linear_warmup", "warmup_cosine", "warmup_linear"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        _require(self.warmup_steps >= 0, "scheduler", "warmup_steps must be >= 0")
        _require(
            self.kind != "constant" or self.warmup_steps == 0,
            "scheduler",
            "a constant schedule has no warm-up (use kind = \"linear_warmup\")",
        )
        _require(0.0 <= self.min_lr_ratio <= 1.0, "scheduler", "min_lr_ratio must be in [0, 1]")


@dataclasses.dataclass
class ClippingSettings:
    """``[clipping]``: gradient clipping on the global norm of all model gradients.

    ``fixed`` clips to ``max_norm``; ``adaptive`` clips to the ``percentile``-th percentile of the last
    ``history`` gradient norms (no clipping until one norm has been seen); ``none`` only measures the norm.
    """

    mode: Literal["fixed", "adaptive", "none"] = "fixed"
    max_norm: float = 5.0
    percentile: float = 90.0
    history: int = 1000

    def __post_init__(self) -> None:
        _require(self.max_norm > 0, "clipping", "max_norm must be > 0")
        _require(0.0 < self.percentile <= 100.0, "clipping", "percentile must be in (0, 100]")
        _require(self.history >= 1, "clipping", "history must be >= 1")


@dataclasses.dataclass
class TrainerSettings:
    """``[trainer]``: the loop.

    ``patience``: validations without improvement of ``[checkpoint] monitor`` that stop the run (0: never);
    ``max_nonfinite_steps``: consecutive updates with a non-finite loss or gradient that abort the run;
    ``validate_at_start``: also validate the initial model (an ``epoch`` 0 row: the untrained baseline);
    ``find_unused_parameters``: needed by DDP when some parameters get no gradient in a step (layer drop,
    pruned or partly frozen models); ``compile``: ``torch.compile`` the model.
    """

    max_epochs: int
    validation_interval: int = 1
    gradient_accumulation_steps: int = 1
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    patience: int = 0
    max_nonfinite_steps: int = 10
    log_interval: int = 10
    validate_at_start: bool = False
    find_unused_parameters: bool = False
    compile: bool = False
    allow_tf32: bool = True

    def __post_init__(self) -> None:
        _require(self.max_epochs >= 1, "trainer", "max_epochs must be >= 1")
        _require(self.validation_interval >= 1, "trainer", "validation_interval must be >= 1")
        _require(self.gradient_accumulation_steps >= 1, "trainer", "gradient_accumulation_steps must be >= 1")
        _require(self.patience >= 0, "trainer", "patience must be >= 0 (0 disables early stopping)")
        _require(self.max_nonfinite_steps >= 1, "trainer", "max_nonfinite_steps must be >= 1")
        _require(self.log_interval >= 1, "trainer", "log_interval must be >= 1")


@dataclasses.dataclass
class CheckpointSettings:
    """``[checkpoint]``: one checkpoint per epoch. Retention keeps the ``keep_last_n`` newest (0 keeps all)
    and the ``keep_best_n`` best by ``monitor`` (a ``val/...`` key of metrics.jsonl), so that
    ``diarizen-lab average --mode best -n N`` with N <= keep_best_n always finds its epochs; ``best`` points to
    the best one."""

    keep_last_n: int = 5
    keep_best_n: int = 5
    monitor: str = "val/der"
    mode: Literal["min", "max"] = "min"

    def __post_init__(self) -> None:
        _require(self.keep_last_n >= 0, "checkpoint", "keep_last_n must be >= 0")
        _require(self.keep_best_n >= 1, "checkpoint", "keep_best_n must be >= 1")
        _require(
            self.monitor.startswith("val/"), "checkpoint", f"monitor must be a 'val/...' metric, got '{self.monitor}'"
        )


@dataclasses.dataclass
class FinetuneSettings:
    """``[finetune]``: start from trained weights (a ``model.pt``, an experiment directory or an averaged
    checkpoint, trained for the same ``[task]``); optimizers, schedulers and counters start fresh."""

    init_from: Asset


def _require(condition: bool, section: str, message: str) -> None:
    if not condition:
        raise DiarizenLabError(f"[{section}] {message}")


#: Sections of the training recipes, for :func:`diarizen_lab.config.load_config`.
SECTIONS: dict[str, type] = {
    "meta": Meta,
    "task": Task,
    "model": Block,
    "objective": Block | None,
    "train_dataset": Block,
    "validation_dataset": Block,
    "dataloader": DataLoaderSettings,
    "optimizer": Block | None,
    "optimizer_small": Block | None,
    "optimizer_big": Block | None,
    "scheduler": ScheduleSettings | None,
    "scheduler_small": ScheduleSettings | None,
    "scheduler_big": ScheduleSettings | None,
    "clipping": ClippingSettings,
    "trainer": TrainerSettings,
    "checkpoint": CheckpointSettings,
    "finetune": FinetuneSettings | None,
}

#: Block arguments the recipe supplies at run time (they may not appear in the TOML).
RUNTIME: dict[str, list[str]] = {
    "model": ["task"],
    "objective": ["task"],
    "optimizer": ["params"],
    "optimizer_small": ["params"],
    "optimizer_big": ["params"],
    "train_dataset": ["task", "frames"],
    "validation_dataset": ["task", "frames"],
}

#: Block arguments of earlier versions that ``[task]`` owns now (an old config fails saying where to move them).
MOVED: dict[str, str] = {key: "task" for key in TASK_KEYS}

#: The objective of a config without ``[objective]``.
DEFAULT_OBJECTIVE = Block(path="diarizen_lab.training.objective.PowersetObjective")
