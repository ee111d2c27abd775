"""A training run, step by step: config -> accelerator -> objective -> model -> data -> optimizers -> trainer.

:func:`train` runs every training config — supervised segmentation (the default powerset objective) and
distill-and-prune (``[objective] path = "diarizen_lab.pruning.DistillPruneObjective"``) alike;
``diarizen-lab train`` and the recipes in ``recipes/`` call it. The ``[task]`` section is handed to the
objective, the model and both datasets (whichever accept a ``task`` argument).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import nn
from torch.utils.data import Dataset

from diarizen_lab.config import Block, Config, accepts, instantiate, load_config, save_resolved
from diarizen_lab.data.dataset import collate
from diarizen_lab.data.frames import FrameGeometry
from diarizen_lab.data.task import Task
from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.models.io import find_model_file, load_checkpoint, model_task
from diarizen_lab.training.checkpoint import Checkpointer, resolve_checkpoint
from diarizen_lab.training.clipping import GradientClipper
from diarizen_lab.training.loaders import EpochLoader, validation_loader
from diarizen_lab.training.loop import Trainer, TrainerState
from diarizen_lab.training.objective import Objective
from diarizen_lab.training.optim import build_optimizers
from diarizen_lab.training.run_dir import CHECKPOINTS
from diarizen_lab.training.settings import DEFAULT_OBJECTIVE, MOVED, RUNTIME, SECTIONS, TrainerSettings


def load_training_config(path: Path | None, overrides: Sequence[str] = ()) -> Config:
    """Load and validate a training config (sections of :mod:`diarizen_lab.training.settings`)."""
    return load_config(path, SECTIONS, overrides, runtime=RUNTIME, moved=MOVED)


def instantiate_for_task(block: Block, task: Task, **runtime: Any) -> Any:
    """Instantiate ``block`` with ``runtime`` arguments, and ``task=task`` when its callable takes one."""
    if accepts(block.path, "task"):
        runtime["task"] = task
    return instantiate(block, **runtime)


def build_objective(block: Block | None, task: Task) -> Objective:
    """The ``[objective]`` block (default: the powerset objective of ``task``)."""
    objective = instantiate_for_task(block or DEFAULT_OBJECTIVE, task)
    if not isinstance(objective, Objective):
        raise DiarizenLabError(f"[objective] {type(objective).__name__} is not a diarizen_lab Objective")
    return objective


def build_model(block: Block, task: Task, objective: Objective) -> nn.Module:
    """The ``[model]`` block, with the task and the arguments the objective supplies."""
    return instantiate_for_task(block, task, **objective.model_arguments(block.args))


def build_accelerator(settings: TrainerSettings) -> Accelerator:
    """DDP (``find_unused_parameters`` only when asked), mixed precision, optional ``torch.compile``, TF32."""
    on_cpu = not torch.cuda.is_available()
    if on_cpu and settings.mixed_precision == "fp16":
        raise DiarizenLabError('[trainer] mixed_precision = "fp16" needs a CUDA GPU: use "bf16" or "no" on CPU')
    accelerator = Accelerator(
        cpu=on_cpu,
        mixed_precision=settings.mixed_precision,
        dynamo_backend="inductor" if settings.compile else "no",
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=settings.find_unused_parameters)],
    )
    if accelerator.device.type == "cuda" and settings.allow_tf32:
        torch.set_float32_matmul_precision("high")
    return accelerator


def initialise_from(model: nn.Module, source: Path, task: Task) -> None:
    """Copy trained weights (a model.pt, a checkpoint or an experiment directory) into ``model``; the
    checkpoint must have been trained for ``task``."""
    path = find_model_file(source)
    checkpoint = load_checkpoint(path)
    trained_for, _ = model_task(checkpoint["model"])
    if trained_for is not None:
        task.check_same(trained_for, "[task]", f"[finetune] init_from {path}")
    state_dict = checkpoint["state_dict"]
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        reason = str(error).splitlines()[0]
        raise InputError(
            f"[finetune] weights do not fit the configured [model] ({reason})",
            path=path,
            fix="configure the same architecture as the checkpoint",
        ) from None


def build_dataset(block: Block, task: Task, frames: FrameGeometry | None) -> Dataset:
    """Instantiate a dataset block for ``task`` with the model's frame geometry (``None``: no labels)."""
    return instantiate_for_task(block, task, frames=frames)


def checkpoint_to_resume(run_dir: Path, resume: Path | bool | None) -> Path | None:
    """The checkpoint to continue from, or ``None`` for a fresh run (refusing to overwrite one)."""
    checkpointer = Checkpointer(run_dir / CHECKPOINTS)
    if resume is None or resume is False:
        if checkpointer.latest() is not None:
            raise DiarizenLabError(
                f"{run_dir} already has checkpoints: pass --resume to continue it, or change [meta] name"
            )
        return None
    if resume is True:
        return checkpointer.latest()
    return resolve_checkpoint(Path(resume))


def train(config: Config, resume: Path | bool | None = None) -> TrainerState:
    """Run the training described by ``config``; see :mod:`diarizen_lab.training` for the sections.

    ``resume``: ``None``/``False`` for a fresh run (refused if the run already has checkpoints), ``True`` for
    its latest checkpoint, or a checkpoint or experiment directory.
    """
    meta, settings, task = config["meta"], config["trainer"], config["task"]
    accelerator = build_accelerator(settings)
    run_dir = meta.run_dir
    resume_from = checkpoint_to_resume(run_dir, resume)

    set_seed(meta.seed)  # the same initial weights on every process
    objective = build_objective(config["objective"], task)
    model = build_model(config["model"], task, objective)
    if config["finetune"] is not None and resume_from is None:
        initialise_from(model, config["finetune"].init_from.require(), task)
    model.to(accelerator.device)

    frames = FrameGeometry.from_model(model, task.chunk_size) if objective.uses_labels else None
    loaders = config["dataloader"]
    pin_memory = accelerator.device.type == "cuda"
    shards = dict(num_processes=accelerator.num_processes, process_index=accelerator.process_index)
    train_loader = EpochLoader(
        build_dataset(config["train_dataset"], task, frames), loaders, seed=meta.seed, pin_memory=pin_memory,
        collate_fn=collate, **shards,
    )
    dev_loader = validation_loader(
        build_dataset(config["validation_dataset"], task, frames), loaders, pin_memory=pin_memory,
        collate_fn=collate, **shards,
    )

    objective.to(accelerator.device)
    updates_per_epoch = math.ceil(len(train_loader) / settings.gradient_accumulation_steps)
    try:
        optimizers = build_optimizers(
            config, model, settings.max_epochs * updates_per_epoch, accelerator.device,
            extra=objective.optimizers(model),
        )
    except DiarizenLabError as error:
        raise DiarizenLabError(f"{config.source}: {error}") from None
    model = accelerator.prepare_model(model)
    set_seed(meta.seed + accelerator.process_index)  # different dropout masks on different processes

    if accelerator.is_main_process:
        save_resolved(config, run_dir)
    trainer = Trainer(
        accelerator=accelerator,
        model=model,
        objective=objective,
        optimizers=optimizers,
        clipper=GradientClipper(config["clipping"]),
        train_loader=train_loader,
        validation_loader=dev_loader,
        settings=settings,
        checkpoint=config["checkpoint"],
        run_dir=run_dir,
    )
    state = trainer.fit(resume_from)
    accelerator.end_training()
    return state
