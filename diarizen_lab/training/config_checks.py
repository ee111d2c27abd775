"""Checks of a training config that need more than its types: what the callables it names accept.

:func:`diarizen_lab.config.load_config` checks each value against the signature of the callable (or the
dataclass) it configures; these checks run the callables themselves on stand-ins, so that a value they refuse
is a one-line error naming the file and section when the config loads (or, for what needs the built model,
before anything is trained or written), never a traceback an epoch later:

- :func:`check_optimizers`: every ``[optimizer*]`` block is built over one stand-in parameter, so torch's own
  checks (negative ``lr`` or ``weight_decay``, ``betas`` outside [0, 1), ...) run at load;
- :func:`located` and :func:`at_key`: what building a block (the model, a dataset, the objective) refuses
  (``num_heads`` not dividing the width, a chunk shorter than the receptive field, ...) is reported at the
  block, or at the ``[task]`` key it comes from;
- :func:`check_monitor`: ``[checkpoint] monitor`` must be a metric the ``[objective]`` logs, as its class
  declares (``metric_names``), at load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from diarizen_lab.config import Block, Config, _Locator, import_object, instantiate
from diarizen_lab.errors import DiarizenLabError, InputError, describe
from diarizen_lab.training.settings import DEFAULT_OBJECTIVE

OPTIMIZER_SECTIONS = ("optimizer", "optimizer_small", "optimizer_big")


def check_optimizers(config: Config) -> Config:
    """Build each configured optimizer over a stand-in parameter; return ``config``."""
    for section in OPTIMIZER_SECTIONS:
        block = config.get(section)
        if block is None:
            continue
        try:
            instantiate(block, params=[nn.Parameter(torch.zeros(1))])
        except ValueError as error:
            raise _locate(config, f"{section}.args", _key_in(block, str(error)), describe(error)) from None
    return config


@contextlib.contextmanager
def located(block: Block) -> Iterator[None]:
    """Report a value that building ``block`` refuses (a ``ValueError``, or an error without a
    file) as a one-line error naming the block's file and section."""
    try:
        yield
    except InputError:
        raise
    except (DiarizenLabError, ValueError) as error:
        raise DiarizenLabError(f"{block.where or block.path}: {describe(error)}") from None


@contextlib.contextmanager
def at_key(config: Config, section: str, key: str) -> Iterator[None]:
    """Report a value refused in the block (a ``ValueError``, or an error without a file) as a one-line error
    at the line of ``[section] key`` of the config file (for a setting that several blocks use, e.g. ``[task]``)."""
    try:
        yield
    except InputError:
        raise
    except (DiarizenLabError, ValueError) as error:
        raise _locate(config, section, key, describe(error)) from None


def check_monitor(config: Config) -> Config:
    """Refuse a ``[checkpoint] monitor`` that the ``[objective]`` does not log (``val/<name>`` of its
    :attr:`~diarizen_lab.training.objective.Objective.metric_names`); return ``config``.

    Reads the names from the objective's class, without building it (a pruning objective loads its teacher).
    An objective class that declares no names is checked by the trainer at its first validation.
    """
    objective = import_object((config["objective"] or DEFAULT_OBJECTIVE).path)
    names = getattr(objective, "metric_names", ())
    logged = [f"val/{name}" for name in names]
    monitor = config["checkpoint"].monitor
    if logged and monitor not in logged:
        raise _locate(config, "checkpoint", "monitor", f"monitor '{monitor}' is not a metric of this run",
                      fix=f"choose one of {', '.join(sorted(logged))}")
    return config


def _key_in(block: Block, message: str) -> str | None:
    """The argument of ``block`` whose value the message quotes (torch names values, not keys)."""
    for key, value in block.args.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and str(value) in message:
            return key
    return None


def _locate(config: Config, section: str, key: str | None, message: str, fix: str | None = None) -> InputError:
    """An error at the line of ``[section] key`` of the config file."""
    try:
        text = config.source.read_text(encoding="utf-8")
    except OSError:
        return InputError(f"[{section}] {message}", path=config.source, fix=fix)
    return _Locator(config.source, text).error(section, key, message, fix=fix)
