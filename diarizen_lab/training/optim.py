"""Optimizers and their parameter groups.

Two layouts, chosen by the config:

- dual: ``[optimizer_small]`` over the WavLM parameters (``model.wavlm_parameters()``) and ``[optimizer_big]``
  over the rest (``model.non_wavlm_parameters()``), each with its own schedule ``[scheduler_small]`` /
  ``[scheduler_big]`` — fine-tuning a pretrained encoder with a small learning rate and a fresh back end with a
  large one;
- single: ``[optimizer]`` (and ``[scheduler]``) over every trainable parameter (Fbank or frozen-WavLM models).

Parameters claimed by an objective's own optimizers are left out of both. Every trainable model parameter
ends up in exactly one optimizer; anything else is an error.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from diarizen_lab.config import Block, import_object, instantiate
from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.training.schedulers import build_scheduler
from diarizen_lab.training.settings import ScheduleSettings


@dataclasses.dataclass
class NamedOptimizer:
    """An optimizer with its name (``lr/<name>`` in the logs), its schedule, and whether its parameters count
    in the clipped global gradient norm."""

    name: str
    optimizer: Optimizer
    scheduler: LRScheduler | None = None
    clip: bool = True

    def parameters(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]


def optimizer_layout(sections: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Optimizer name -> (optimizer section, scheduler section), checking that ``sections`` (section name ->
    value or ``None``, e.g. a loaded training config) pick one layout."""
    single = sections.get("optimizer") is not None
    dual = [sections.get(name) is not None for name in ("optimizer_small", "optimizer_big")]
    if single and any(dual):
        raise DiarizenLabError("[optimizer] and [optimizer_small]/[optimizer_big] are exclusive; keep one layout")
    if single:
        _forbid(sections, ("scheduler_small", "scheduler_big"), "[optimizer] is scheduled by [scheduler]")
        return {"main": ("optimizer", "scheduler")}
    if all(dual):
        _forbid(sections, ("scheduler",), "dual optimizers are scheduled by [scheduler_small] and [scheduler_big]")
        return {"small": ("optimizer_small", "scheduler_small"), "big": ("optimizer_big", "scheduler_big")}
    raise DiarizenLabError("add [optimizer] (one optimizer) or both [optimizer_small] and [optimizer_big]")


def _forbid(sections: Mapping[str, Any], names: Iterable[str], reason: str) -> None:
    for name in names:
        if sections.get(name) is not None:
            raise DiarizenLabError(f"[{name}] is not used ({reason})")


def split_parameters(
    model: nn.Module, layout: Iterable[str], exclude: Iterable[nn.Parameter] = ()
) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters per optimizer name of ``layout`` (``main``, or ``small`` and ``big``)."""
    excluded = {id(p) for p in exclude}

    def keep(parameters: Iterable[nn.Parameter]) -> list[nn.Parameter]:
        return [p for p in parameters if p.requires_grad and id(p) not in excluded]

    layout = list(layout)
    if layout == ["main"]:
        return {"main": keep(model.parameters())}
    for method in ("wavlm_parameters", "non_wavlm_parameters"):
        if not callable(getattr(model, method, None)):
            raise DiarizenLabError(
                f"{type(model).__name__} has no {method}(): dual optimizers need a WavLM model; use [optimizer]"
            )
    groups = {"small": keep(model.wavlm_parameters()), "big": keep(model.non_wavlm_parameters())}
    for name, parameters in groups.items():
        if not parameters:
            raise DiarizenLabError(
                f"[optimizer_{name}] would get no trainable parameter of {type(model).__name__} "
                "(frozen or absent WavLM?): use a single [optimizer]"
            )
    return groups


def check_partition(model: nn.Module, optimizers: Sequence[NamedOptimizer]) -> None:
    """Every trainable model parameter is in exactly one optimizer, and no frozen one is."""
    names = {id(p): name for name, p in model.named_parameters()}
    owner: dict[int, str] = {}
    for named in optimizers:
        for parameter in named.parameters():
            if id(parameter) in owner:
                raise DiarizenLabError(
                    f"parameter '{names.get(id(parameter), '?')}' is in optimizers "
                    f"'{owner[id(parameter)]}' and '{named.name}'"
                )
            owner[id(parameter)] = named.name
    missing = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in owner]
    if missing:
        raise DiarizenLabError(f"trainable parameters in no optimizer: {', '.join(missing[:5])}")
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad and id(p) in owner]
    if frozen:
        raise DiarizenLabError(f"frozen parameters given to an optimizer: {', '.join(frozen[:5])}")


def build_optimizer(block: Block, parameters: list[nn.Parameter], device: torch.device) -> Optimizer:
    """Instantiate ``block`` over ``parameters``; on CUDA, use the fused kernel when the class has one and the
    config does not say otherwise."""
    extra = {}
    target = import_object(block.path)
    if device.type == "cuda" and "fused" not in block.args and "fused" in inspect.signature(target).parameters:
        extra["fused"] = True
    return instantiate(block, params=parameters, **extra)


def build_optimizers(
    sections: Mapping[str, Block | ScheduleSettings | None],
    model: nn.Module,
    total_steps: int,
    device: torch.device,
    extra: Sequence[NamedOptimizer] = (),
) -> list[NamedOptimizer]:
    """The optimizers and schedules of ``sections`` (``optimizer*`` blocks and ``scheduler*`` settings by
    section name; absent or ``None`` when not configured), then ``extra`` (an objective's own); checks the
    partition."""
    layout = optimizer_layout(sections)
    claimed = [p for named in extra for p in named.parameters()]
    groups = split_parameters(model, layout, exclude=claimed)
    optimizers = []
    for name, (optimizer_section, scheduler_section) in layout.items():
        optimizer = build_optimizer(sections[optimizer_section], groups[name], device)
        schedule = sections.get(scheduler_section) or ScheduleSettings()
        optimizers.append(NamedOptimizer(name, optimizer, build_scheduler(optimizer, schedule, total_steps)))
    optimizers.extend(extra)
    check_partition(model, optimizers)
    return optimizers
