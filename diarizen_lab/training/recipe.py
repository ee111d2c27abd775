"""The supervised training recipe, step by step: config -> accelerator -> model -> data -> objective ->
optimizers -> trainer. ``recipes/diar_ssl/run_dual_opt.py`` and ``diarizen-lab train`` both run :func:`train`;
other recipes (pruning) compose the same steps with their own objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import nn
from torch.utils.data import Dataset

from diarizen_lab.config import Block, Config, instantiate, load_config, save_resolved
from diarizen_lab.data.dataset import collate
from diarizen_lab.data.frames import FrameGeometry
from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.training.checkpoint import Checkpointer, resolve_checkpoint
from diarizen_lab.training.clipping import GradientClipper
from diarizen_lab.training.loaders import EpochLoader, validation_loader
from diarizen_lab.training.loop import Trainer, TrainerState
from diarizen_lab.training.objective import Objective, PowersetObjective
from diarizen_lab.training.optim import build_optimizers
from diarizen_lab.training.settings import RUNTIME, SECTIONS, TrainerSettings


def load_training_config(path: Path, overrides: list[str] = ()) -> Config:
    """Load and validate a training config (sections of :mod:`diarizen_lab.training.settings`)."""
    return load_config(path, SECTIONS, overrides, runtime=RUNTIME)


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


def initialise_from(model: nn.Module, source: Path) -> None:
    """Copy trained weights into ``model``: from anything :func:`diarizen_lab.models.load_model` reads (a model.pt,
    a checkpoint or experiment directory, a released DiariZen folder)."""
    from diarizen_lab.models import load_model

    try:
        model.load_state_dict(load_model(source).state_dict(), strict=True)
    except RuntimeError as error:
        reason = str(error).splitlines()[0]
        raise InputError(
            f"[finetune] weights do not fit the configured [model] ({reason})",
            path=source,
            fix="configure the same architecture as the checkpoint",
        ) from None


def build_dataset(block: Block, model: nn.Module) -> Dataset:
    """Instantiate a dataset block with the model's frame geometry for the block's chunk size."""
    # a segmentation model knows its training chunk; other models (a pruning student) need chunk_size in the block
    chunk_size = block.args["chunk_size"] if "chunk_size" in block.args else model.specifications.duration
    return instantiate(block, frames=FrameGeometry.from_model(model, chunk_size))


def checkpoint_to_resume(run_dir: Path, resume: Path | bool | None) -> Path | None:
    """The checkpoint to continue from, or ``None`` for a fresh run (refusing to overwrite one)."""
    checkpointer = Checkpointer(run_dir / "checkpoints")
    if resume is None or resume is False:
        if checkpointer.latest() is not None:
            raise DiarizenLabError(
                f"{run_dir} already has checkpoints: pass --resume to continue it, or change [meta] name"
            )
        return None
    if resume is True:
        return checkpointer.latest()
    return resolve_checkpoint(Path(resume))


def train(
    config: Config,
    resume: Path | bool | None = None,
    make_objective: Callable[[nn.Module], Objective] = PowersetObjective.for_model,
) -> TrainerState:
    """Run the training described by ``config``; see :mod:`diarizen_lab.training` for the sections."""
    meta, settings = config["meta"], config["trainer"]
    accelerator = build_accelerator(settings)
    run_dir = meta.run_dir
    resume_from = checkpoint_to_resume(run_dir, resume)

    set_seed(meta.seed)  # the same initial weights on every process
    model = instantiate(config["model"])
    if config["finetune"] is not None and resume_from is None:
        initialise_from(model, config["finetune"].init_from)
    model.to(accelerator.device)

    loaders = config["dataloader"]
    pin_memory = accelerator.device.type == "cuda"
    shards = dict(num_processes=accelerator.num_processes, process_index=accelerator.process_index)
    train_loader = EpochLoader(
        build_dataset(config["train_dataset"], model), loaders, seed=meta.seed, pin_memory=pin_memory,
        collate_fn=collate, **shards,
    )
    dev_loader = validation_loader(
        build_dataset(config["validation_dataset"], model), loaders, pin_memory=pin_memory, collate_fn=collate,
        **shards,
    )

    objective = make_objective(model).to(accelerator.device)
    updates_per_epoch = math.ceil(len(train_loader) / settings.gradient_accumulation_steps)
    optimizers = build_optimizers(
        config, model, settings.max_epochs * updates_per_epoch, accelerator.device, extra=objective.optimizers(model)
    )
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
