"""What a resumed run may change, and the record of what it changed.

``--resume`` continues a run exactly: the checkpoint restores the optimizer, schedules and data order of the
config the run was trained with. A config that now says something else (another learning rate, batch size,
dataset, model or schedule) would be silently ignored in part (the restored optimizer keeps its old learning
rate) and applied in part (the new data), while ``config.toml`` claimed the new values. So the resolved config
is compared with the ``config.toml`` of the run that wrote the checkpoint, key by key:

- where to write the run (``[meta] name``, ``exp_dir``, ``root``) is not compared: the paths in a resolved
  config are absolute;
- keys that change neither the updates nor the values logged (:data:`HARMLESS`: logging interval, loader
  workers, retention, patience, ...) and ``[trainer] max_epochs`` when no schedule decays over the run's length
  may differ: extending a run is what resuming is for;
- any other difference (``[task]`` and ``[objective]`` included) refuses the resume with the list of keys (``old -> new``), unless ``--resume-with-changes``
  accepts it. Accepted changes apply from the resumed epoch on: the config's optimizer hyper-parameters and
  schedules replace the checkpoint's (its optimizer moments and schedule step are kept), the model, data and
  loader are built from the config; the data order and random streams continue from the checkpoint.

Nothing in the run directory is rewritten before the checkpoint has loaded. Then ``config.toml`` is replaced by
the config the run continues with and, when anything differed, one ``[[resume]]`` entry is appended to
``config.history.toml`` beside it: when, from which checkpoint (epoch, step), and each changed key with its
``old`` and ``new`` value (a key absent from one side has no ``old`` or no ``new``). ``metrics.jsonl`` holds
only validation rows (every reader selects epochs from it), so the history is kept out of it; its ``epoch``
field says from which row on the new values apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w
from torch import nn

from diarizen_lab.config import Config, save_resolved, to_toml
from diarizen_lab.errors import InputError
from diarizen_lab.training.optim import NamedOptimizer
from diarizen_lab.utils.atomic import atomic_open

CONFIG_FILE = "config.toml"
HISTORY_FILE = "config.history.toml"

#: Where the run is written: never compared.
LOCATION = frozenset({"meta.name", "meta.exp_dir", "meta.root"})
#: Keys that change neither the parameter updates nor the logged values of the epochs already run.
HARMLESS = frozenset({
    "trainer.log_interval",
    "trainer.patience",
    "trainer.validate_at_start",
    "trainer.find_unused_parameters",
    "dataloader.num_workers",
    "dataloader.pin_memory",
    "dataloader.persistent_workers",
    "checkpoint.keep_last_n",
    "checkpoint.keep_best_n",
})
#: Schedules whose shape depends on the run's length (``max_epochs`` times the updates per epoch).
DECAYING = frozenset({"warmup_cosine", "warmup_linear"})


@dataclasses.dataclass(frozen=True)
class Change:
    """One key whose value differs between the saved and the current config (``None``: absent)."""

    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {_shown(self.old)} -> {_shown(self.new)}"


def saved_config_path(checkpoint: Path) -> Path:
    """The ``config.toml`` of the run that wrote ``checkpoint`` (``<exp>/checkpoints/epoch_NNNN``)."""
    return checkpoint.parent.parent / CONFIG_FILE


def config_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[Change]:
    """Every differing leaf key of two TOML tables (location keys left out), sorted by key."""
    old, new = _flatten(saved), _flatten(current)
    keys = sorted((old.keys() | new.keys()) - LOCATION)
    return [Change(key, old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)]


def run_changing(changes: list[Change], current: Mapping[str, Any]) -> list[Change]:
    """The changes that alter the run (see the module docstring)."""
    decays = any(
        isinstance(section, dict) and section.get("kind") in DECAYING
        for name, section in current.items()
        if name.startswith("scheduler")
    )
    return [
        change for change in changes
        if change.key not in HARMLESS and not (change.key == "trainer.max_epochs" and not decays)
    ]


def check_resume(config: Config, checkpoint: Path | None, accept_changes: bool = False) -> list[Change]:
    """Compare ``config`` with the saved config of ``checkpoint``'s run; return every difference.

    Raises :class:`InputError` when a difference alters the run and ``accept_changes`` is false, or when there
    is no saved config to compare with. Returns ``[]`` for a fresh run (``checkpoint`` is ``None``).
    """
    if checkpoint is None:
        return []
    path = saved_config_path(checkpoint)
    current = tomllib.loads(to_toml(config))
    try:
        saved = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        if accept_changes:
            return []
        raise InputError(
            f"cannot compare the config with the one the checkpoint was trained with ({type(error).__name__})",
            path=path,
            fix="restore it, or pass --resume-with-changes to resume with this config anyway",
        ) from None
    changes = config_changes(saved, current)
    refused = run_changing(changes, current)
    if refused and not accept_changes:
        listed = "; ".join(str(change) for change in refused)
        raise InputError(
            f"resuming with a config that changes the run: {listed}",
            path=config.source,
            fix=f"undo the change to continue {checkpoint.parent.parent.name}, pass --resume-with-changes to "
            f"apply it from epoch {_epoch_of(checkpoint)} on (recorded in {HISTORY_FILE}), or start a new run",
        )
    return changes


def record_config(
    config: Config, run_dir: Path, changes: list[Change], checkpoint: Path | None, epoch: int, step: int
) -> None:
    """Write ``run_dir/config.toml`` and, when ``changes``, append a ``[[resume]]`` entry to the history.

    Call it after the checkpoint has loaded (main process only).
    """
    if changes:
        entry = {
            "time": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0),
            "checkpoint": str(checkpoint),
            "epoch": epoch,
            "step": step,
            "changes": {
                change.key: {name: value for name, value in (("old", change.old), ("new", change.new))
                             if value is not None}
                for change in changes
            },
        }
        history = run_dir / HISTORY_FILE
        before = history.read_text(encoding="utf-8") if history.is_file() else ""
        with atomic_open(history, "w", encoding="utf-8") as f:
            f.write(before + ("\n" if before else "") + tomli_w.dumps({"resume": [entry]}))
        print(
            f"diarizen-lab: resuming with {len(changes)} changed key(s) from epoch {epoch}, recorded in {history}: "
            + "; ".join(str(change) for change in changes)
        )
    save_resolved(config, run_dir)


@contextlib.contextmanager
def configured_values_kept(optimizers: Sequence[NamedOptimizer], keep: bool) -> Iterator[None]:
    """Around loading a checkpoint: when ``keep``, the optimizers' hyper-parameters (``lr``, ``weight_decay``,
    ``betas``, ...) and schedules (warm-up, decay, run length) stay those of the config, as accepted changes
    must; the checkpoint still restores the optimizer moments and the schedule's step.

    Without it the checkpoint's values would win: ``load_state_dict`` restores the groups' hyper-parameters
    and the schedule's settings along with its step.
    """
    configured = [
        (
            [{key: value for key, value in group.items() if key != "params"} for group in named.optimizer.param_groups],
            [dict(vars(multiplier)) for multiplier in named.scheduler.lr_lambdas] if named.scheduler else None,
        )
        for named in optimizers
    ]
    yield
    if not keep:
        return
    for named, (groups, multipliers) in zip(optimizers, configured):
        for group, values in zip(named.optimizer.param_groups, groups):
            group.update(values)
        scheduler = named.scheduler
        if scheduler is not None:
            for multiplier, values in zip(scheduler.lr_lambdas, multipliers):
                vars(multiplier).update(values)
            scheduler.base_lrs = [group["initial_lr"] for group in named.optimizer.param_groups]
            rates = [base * multiplier(scheduler.last_epoch)
                     for base, multiplier in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
            for group, rate in zip(named.optimizer.param_groups, rates):
                group["lr"] = rate
            scheduler._last_lr = rates


def require_training_state(state: Any, path: Path) -> dict[str, Any]:
    """``state`` when it is a ``training_state.pt`` dict with every part the trainer restores."""
    expected = ("trainer", "optimizers", "schedulers", "clipper", "objective", "data", "rng")
    missing = [key for key in expected if not isinstance(state, dict) or key not in state]
    if missing:
        raise InputError(
            f"not a complete training state (missing: {', '.join(missing)})",
            path=path,
            fix="it was not written by diarizen_lab training, or is damaged: resume from another checkpoint",
        )
    return state


def load_weights(model: nn.Module, state_dict: Mapping[str, Any], path: Path) -> None:
    """``model.load_state_dict(state_dict, strict=True)``; weights of another architecture are a one-line error."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        details = "; ".join(line.strip() for line in str(error).splitlines()[1:] if line.strip())
        raise InputError(
            f"the checkpoint's weights do not fit the configured [model] ({details[:300]})",
            path=path,
            fix="resume with the [model] the checkpoint was trained with",
        ) from None


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _shown(value: Any) -> str:
    return "(unset)" if value is None else repr(value)


def _epoch_of(checkpoint: Path) -> str:
    return checkpoint.name.removeprefix("epoch_").lstrip("0") or "0"

