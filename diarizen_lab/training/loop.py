"""The training loop: epochs of accumulated, clipped, mixed-precision updates; validation; checkpoints; resume.

One :class:`Trainer` serves every recipe; what is optimised comes from an
:class:`~diarizen_lab.training.objective.Objective`. Per update, the trainer:

1. runs ``gradient_accumulation_steps`` micro-batches (DDP gradient sync only on the last one), each loss
   divided by the number of micro-batches of the update so that the gradient is that of their mean;
2. unscales fp16 gradients, measures the global gradient norm, and agrees across processes whether the loss or
   the norm is non-finite — then the update is skipped and counted; ``max_nonfinite_steps`` skips in a row abort;
3. clips, steps every optimizer and schedule, and calls ``Objective.on_update``.

After every ``validation_interval`` epochs (and the last one) it validates, appends a row to ``metrics.jsonl``,
tracks the best ``[checkpoint] monitor`` value and the early-stopping patience; after every epoch it writes a
checkpoint. Resuming from a checkpoint restores everything that influences later values, so on CPU a resumed
run writes the same ``metrics.jsonl`` as an uninterrupted one (except the ``time/...`` fields).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.data.task import Task
from diarizen_lab.models.io import MODEL_FILE, load_checkpoint, model_task
from diarizen_lab.training.checkpoint import (
    Checkpointer,
    capture_rng_state,
    load_training_state,
    restore_rng_state,
)
from diarizen_lab.training.clipping import GradientClipper
from diarizen_lab.training.loaders import EpochLoader, to_device
from diarizen_lab.training.objective import Objective
from diarizen_lab.training.optim import NamedOptimizer
from diarizen_lab.training.run_dir import CHECKPOINTS, rank_epochs, read_metric
from diarizen_lab.training.run_log import RunLog
from diarizen_lab.training.settings import CheckpointSettings, TrainerSettings


@dataclasses.dataclass
class TrainerState:
    """Counters saved in every checkpoint (plain values only)."""

    epoch: int = 0  # completed epochs
    step: int = 0  # applied optimizer updates
    best_value: float | None = None
    best_epoch: int | None = None
    bad_validations: int = 0  # validations since the monitored metric last improved
    stopped_early: bool = False
    nonfinite_in_a_row: int = 0
    skipped_updates: int = 0
    elapsed: float = 0.0  # training wall time of the processes before the last resume (seconds)
    #: this process's sums since the last validation: micro_batches, samples, norms, grad_norm_sum,
    #: grad_norm_max and train/<term> (summed over micro-batches)
    window: dict[str, float] = dataclasses.field(default_factory=dict)


class Trainer:
    """Trains ``model`` (already prepared by ``accelerator``) on an objective; see the module docstring."""

    def __init__(
        self,
        *,
        accelerator: Accelerator,
        model: nn.Module,
        objective: Objective,
        optimizers: Sequence[NamedOptimizer],
        clipper: GradientClipper,
        train_loader: EpochLoader,
        validation_loader: DataLoader,
        settings: TrainerSettings,
        checkpoint: CheckpointSettings,
        run_dir: Path,
    ) -> None:
        self.accelerator = accelerator
        self.model = model
        self.objective = objective
        self.optimizers = list(optimizers)
        self.clipper = clipper
        self.train_loader = train_loader
        self.validation_loader = validation_loader
        self.settings = settings
        self.checkpoint_settings = checkpoint
        self.checkpointer = Checkpointer(run_dir / CHECKPOINTS, keep_last_n=checkpoint.keep_last_n)
        self.run_log = RunLog(run_dir, enabled=accelerator.is_main_process)
        self.state = TrainerState()
        self._clipped = [p for named in self.optimizers if named.clip for p in named.parameters()]
        self._started = self._window_started = time.perf_counter()

    @property
    def unwrapped_model(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------------------------------------------
    # Running

    def fit(self, resume_from: Path | None = None) -> TrainerState:
        """Train until ``max_epochs`` or early stopping; continue from ``resume_from`` (a checkpoint dir)."""
        if resume_from is not None:
            self.load(resume_from)
        if self.accelerator.is_main_process:
            self.checkpointer.remove_stale_temporaries()
        self.run_log.start(
            resumed_epoch=self.state.epoch if resume_from is not None else None, resumed_step=self.state.step
        )
        self._started = self._window_started = time.perf_counter()
        try:
            if resume_from is None and self.settings.validate_at_start:
                row = self.validation_row(0)
                self.run_log.append(row)
                self._announce(row, is_best=False)
            while self.state.epoch < self.settings.max_epochs and not self.state.stopped_early:
                epoch = self.state.epoch + 1
                self.train_epoch(epoch)
                self.state.epoch = epoch
                is_best = False
                if epoch % self.settings.validation_interval == 0 or epoch == self.settings.max_epochs:
                    row = self.validation_row(epoch)
                    is_best = self._track(row)
                    self.run_log.append(row)
                    self._announce(row, is_best)
                self.save(is_best)
        finally:
            self.run_log.close()
        return self.state

    def train_epoch(self, epoch: int) -> None:
        self.model.train()
        batches = self.train_loader.epoch(epoch)
        num_batches = len(self.train_loader)
        accumulation = self.settings.gradient_accumulation_steps
        progress = tqdm(
            total=num_batches,
            desc=f"epoch {epoch}",
            unit="batch",
            disable=not self.accelerator.is_main_process,
            dynamic_ncols=True,
        )
        interval_start, interval_samples = time.perf_counter(), 0
        with progress:
            for first in range(0, num_batches, accumulation):
                size = min(accumulation, num_batches - first)
                terms, samples = self._accumulate(batches, size)
                self._update(terms, size, samples)
                interval_samples += samples
                progress.update(size)
                if self.state.step % self.settings.log_interval == 0 and self.accelerator.is_main_process:
                    now = time.perf_counter()
                    samples_per_s = interval_samples * self.accelerator.num_processes / max(now - interval_start, 1e-9)
                    self._report(progress, terms["loss"].item() / size, samples_per_s)
                    interval_start, interval_samples = now, 0

    def _report(self, progress: tqdm, loss: float, samples_per_s: float) -> None:
        """Progress bar and TensorBoard: the latest update's loss, learning rates and throughput."""
        lrs = self._learning_rates()
        progress.set_postfix(loss=f"{loss:.4f}", lr=f"{next(iter(lrs.values())):.2e}", sps=f"{samples_per_s:.1f}")
        self.run_log.scalars({"train/loss_step": loss, **lrs, "time/samples_per_s": samples_per_s}, self.state.step)

    def _accumulate(self, batches: Iterable[Any], size: int) -> tuple[dict[str, torch.Tensor], int]:
        """Forward and backward ``size`` micro-batches; return the summed (detached) terms and sample count."""
        summed: dict[str, torch.Tensor] = {}
        samples = 0
        for index in range(size):
            batch = to_device(next(batches), self.accelerator.device)
            sync = index == size - 1
            with contextlib.nullcontext() if sync else self.accelerator.no_sync(self.model):
                terms = self.objective.training_step(self.model, batch)
                self.accelerator.backward(terms["loss"] / size)
            for name, value in terms.items():
                summed[name] = summed.get(name, 0.0) + value.detach().float()
            samples += _batch_size(batch)
        return summed, samples

    def _update(self, terms: dict[str, torch.Tensor], micro_batches: int, samples: int) -> None:
        scaler = self.accelerator.scaler
        if scaler is not None:
            for named in self.optimizers:
                scaler.unscale_(named.optimizer)
        norm = GradientClipper.total_norm(self._clipped).to(self.accelerator.device)
        loss = terms["loss"]
        nonfinite = ~torch.isfinite(loss)
        if scaler is None:  # with fp16, the grad scaler handles overflowing gradients itself
            nonfinite = nonfinite | ~torch.isfinite(norm)
        flag = nonfinite.float().reshape(1)
        if self.accelerator.num_processes > 1:
            flag = self.accelerator.reduce(flag, reduction="sum")
        names = sorted(terms)
        values = torch.stack([flag[0], norm.float(), *(terms[name] for name in names)]).tolist()
        skip, norm_value, term_values = values[0] > 0, values[1], dict(zip(names, values[2:]))

        if skip:
            self._skip(scaler)
            return
        self.state.nonfinite_in_a_row = 0
        self.clipper.clip(self._clipped, norm)
        if math.isfinite(norm_value):
            self.clipper.observe(norm_value)
        for named in self.optimizers:
            if scaler is not None:
                scaler.step(named.optimizer)
            else:
                named.optimizer.step()
        if scaler is not None:
            scaler.update()
        for named in self.optimizers:
            if named.scheduler is not None:
                named.scheduler.step()
            named.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.objective.on_update(self.state.step)

        window = self.state.window
        for name, value in term_values.items():
            window[f"train/{name}"] = window.get(f"train/{name}", 0.0) + value
        window["micro_batches"] = window.get("micro_batches", 0) + micro_batches
        window["samples"] = window.get("samples", 0) + samples
        if math.isfinite(norm_value):
            window["norms"] = window.get("norms", 0) + 1
            window["grad_norm_sum"] = window.get("grad_norm_sum", 0.0) + norm_value
            window["grad_norm_max"] = max(window.get("grad_norm_max", 0.0), norm_value)

    def _skip(self, scaler: Any) -> None:
        for named in self.optimizers:
            named.optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.update()
        self.state.skipped_updates += 1
        self.state.nonfinite_in_a_row += 1
        if self.state.nonfinite_in_a_row >= self.settings.max_nonfinite_steps:
            raise DiarizenLabError(
                f"{self.state.nonfinite_in_a_row} updates in a row had a non-finite loss or gradient norm "
                f"(epoch {self.state.epoch + 1}, after step {self.state.step}): lower the learning rate, enable "
                "[clipping], use bf16 rather than fp16, or check the data"
            )

    # ------------------------------------------------------------------------------------------------------
    # Validation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Metrics over the whole validation set (counts summed over batches and processes)."""
        model = self.unwrapped_model
        model.eval()
        totals: dict[str, torch.Tensor] = {}
        for batch in self.validation_loader:
            counts = self.objective.validation_step(model, to_device(batch, self.accelerator.device))
            for name, value in counts.items():
                totals[name] = totals.get(name, 0.0) + value.detach().double()
        model.train()
        counts = self._sum_over_processes(totals)
        return self.objective.validation_metrics(counts)

    def validation_row(self, epoch: int) -> dict[str, Any]:
        """The ``metrics.jsonl`` row of this validation; starts a new training window."""
        validation = self.validate()
        window = self.state.window
        summed = self._sum_over_processes(
            {key: window.get(key, 0.0) for key in _SUMMED_KEYS}
            | {key: value for key, value in window.items() if key.startswith("train/")}
        )
        row: dict[str, Any] = {"epoch": epoch, "step": self.state.step}
        if summed["micro_batches"]:
            row.update({k: v / summed["micro_batches"] for k, v in summed.items() if k.startswith("train/")})
        if window.get("norms"):
            row["train/grad_norm_mean"] = window["grad_norm_sum"] / window["norms"]
            row["train/grad_norm_max"] = window["grad_norm_max"]
        threshold = self.clipper.threshold()
        if threshold is not None:
            row["train/clip_threshold"] = threshold
        row["train/skipped_updates"] = self.state.skipped_updates
        row.update(self._learning_rates())
        row.update({f"val/{name}": value for name, value in validation.items()})
        row.update(self.objective.epoch_metrics(self.unwrapped_model))
        now = time.perf_counter()
        row["time/elapsed_s"] = self.state.elapsed + now - self._started
        row["time/samples_per_s"] = summed["samples"] / max(now - self._window_started, 1e-9)
        self.state.window = {}
        self._window_started = now
        return row

    def _sum_over_processes(self, values: dict[str, torch.Tensor | float]) -> dict[str, float]:
        """Sum each value over processes (float64), in a fixed key order."""
        names = sorted(values)
        if not names:
            return {}
        stacked = torch.stack([torch.as_tensor(values[name], dtype=torch.float64) for name in names])
        stacked = stacked.to(self.accelerator.device)
        if self.accelerator.num_processes > 1:
            stacked = self.accelerator.reduce(stacked, reduction="sum")
        return dict(zip(names, stacked.tolist()))

    def _track(self, row: dict[str, Any]) -> bool:
        """Update best value and patience from ``row``; return whether it is the best so far.

        Every process computes the same decision: the metric comes from counts summed over all processes.
        """
        if self.checkpoint_settings.monitor not in row:
            available = ", ".join(sorted(k for k in row if k.startswith("val/")))
            raise DiarizenLabError(
                f"[checkpoint] monitor '{self.checkpoint_settings.monitor}' is not a metric; choose one of {available}"
            )
        value = row[self.checkpoint_settings.monitor]
        best = self.state.best_value
        improved = math.isfinite(value) and (
            best is None or (value < best if self.checkpoint_settings.mode == "min" else value > best)
        )
        if improved:
            self.state.best_value, self.state.best_epoch, self.state.bad_validations = value, row["epoch"], 0
        else:
            self.state.bad_validations += 1
            patience = self.settings.patience
            self.state.stopped_early = 0 < patience <= self.state.bad_validations
        return improved

    def _announce(self, row: dict[str, Any], is_best: bool) -> None:
        if not self.accelerator.is_main_process:
            return
        shown = [f"{key} {row[key]:.4f}" for key in ("train/loss", "val/loss", "val/der") if key in row]
        notes = " (best)" if is_best else ""
        if self.state.stopped_early:
            notes += f"; no improvement of {self.checkpoint_settings.monitor} in {self.state.bad_validations} validations: stopping"
        tqdm.write(f"epoch {row['epoch']} step {row['step']}: {', '.join(shown)}{notes}")

    def _learning_rates(self) -> dict[str, float]:
        return {f"lr/{named.name}": named.optimizer.param_groups[0]["lr"] for named in self.optimizers}

    # ------------------------------------------------------------------------------------------------------
    # Checkpoints

    def save(self, is_best: bool) -> None:
        """Write the checkpoint of the epoch just completed (collective: every process must call it)."""
        rng_states = gather_object([capture_rng_state()])
        if self.accelerator.is_main_process:
            state = {
                "trainer": dataclasses.asdict(self.state)
                | {"elapsed": self.state.elapsed + time.perf_counter() - self._started},
                "optimizers": {named.name: named.optimizer.state_dict() for named in self.optimizers},
                "schedulers": {
                    named.name: named.scheduler.state_dict() for named in self.optimizers if named.scheduler
                },
                "scaler": self.accelerator.scaler.state_dict() if self.accelerator.scaler is not None else None,
                "clipper": self.clipper.state_dict(),
                "objective": self.objective.state_dict(),
                "data": {"seed": self.train_loader.seed, "next_epoch": self.state.epoch + 1},
                "rng": rng_states,
            }
            meta = {"epoch": self.state.epoch, "step": self.state.step}
            self.checkpointer.save(
                self.state.epoch, self.unwrapped_model, state, meta, is_best, keep=self.best_epochs()
            )
        self.accelerator.wait_for_everyone()

    def best_epochs(self) -> list[int]:
        """The ``keep_best_n`` epochs with the best monitored metric so far: the epochs ``average --mode best``
        picks (:func:`~diarizen_lab.training.run_dir.rank_epochs`, the same reader and tie rule)."""
        settings = self.checkpoint_settings
        if not self.run_log.metrics_path.is_file():
            return []
        ranked = rank_epochs(read_metric(self.run_log.run_dir, settings.monitor), settings.mode)
        return [score.epoch for score in ranked[: settings.keep_best_n]]

    def load(self, checkpoint: Path) -> None:
        """Restore model weights, optimizers, schedules, scaler, clipper, objective, counters and RNG states."""
        state = load_training_state(checkpoint)
        saved = load_checkpoint(checkpoint / MODEL_FILE)
        trained_for, _ = model_task(saved["model"])
        task = getattr(self.unwrapped_model, "task", None)
        if trained_for is not None and isinstance(task, Task):
            task.check_same(trained_for, "[task]", f"the checkpoint {checkpoint}")
        self.unwrapped_model.load_state_dict(saved["state_dict"], strict=True)
        names = {named.name for named in self.optimizers}
        if set(state["optimizers"]) != names:
            raise InputError(
                f"checkpoint has optimizers {sorted(state['optimizers'])}, this run {sorted(names)}",
                path=checkpoint,
                fix="resume with the optimizer layout the checkpoint was trained with",
            )
        for named in self.optimizers:
            named.optimizer.load_state_dict(state["optimizers"][named.name])
            if named.scheduler is not None:
                named.scheduler.load_state_dict(state["schedulers"][named.name])
        if self.accelerator.scaler is not None and state["scaler"] is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        self.clipper.load_state_dict(state["clipper"])
        self.objective.load_state_dict(state["objective"])
        self.state = TrainerState(**state["trainer"])
        self.train_loader.seed = state["data"]["seed"]  # the data order the checkpoint was trained with
        rng_states = state["rng"]
        if len(rng_states) == self.accelerator.num_processes:
            restore_rng_state(rng_states[self.accelerator.process_index])
        elif self.accelerator.is_main_process:
            tqdm.write(
                f"warning: {checkpoint} was saved by {len(rng_states)} process(es), this run has "
                f"{self.accelerator.num_processes}: random streams restart, the run is not bit-identical"
            )


#: window counters summed over processes at validation (grad-norm statistics are the same on every process)
_SUMMED_KEYS = ("micro_batches", "samples")


def _batch_size(batch: Any) -> int:
    tensors = batch.values() if isinstance(batch, dict) else batch
    return next(len(value) for value in tensors if isinstance(value, torch.Tensor))
