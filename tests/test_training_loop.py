"""The training loop: gradient accumulation, non-finite losses, early stopping, exact resume, fine-tuning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from diarizen_lab.config import Block
from diarizen_lab.data.random_chunks import RandomChunks
from diarizen_lab.data.task import Task
from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.models.fbank_conformer import FbankConformer
from diarizen_lab.models.io import save_model
from diarizen_lab.training.clipping import GradientClipper
from diarizen_lab.training.loaders import EpochLoader, validation_loader
from diarizen_lab.training.loop import Trainer
from diarizen_lab.training.objective import PowersetObjective
from diarizen_lab.training.optim import build_optimizers
from diarizen_lab.training.recipe import build_accelerator, initialise_from, load_training_config, train
from diarizen_lab.training.run_dir import read_metrics
from diarizen_lab.training.run_log import TIME_PREFIX
from diarizen_lab.training.settings import (
    CheckpointSettings,
    ClippingSettings,
    DataLoaderSettings,
    TrainerSettings,
)

TASK = Task(chunk_size=1.0)
TINY = dict(task=TASK, attention_in=16, ffn_hidden=32, num_heads=2, num_layers=1, kernel_size=3)


def make_trainer(
    run_dir: Path,
    *,
    batch_size: int = 4,
    accumulation: int = 1,
    max_epochs: int = 1,
    patience: int = 0,
    lr: float = 0.1,
    objective_class: type[PowersetObjective] = PowersetObjective,
    max_nonfinite_steps: int = 10,
    validate_at_start: bool = False,
) -> Trainer:
    settings = TrainerSettings(
        max_epochs=max_epochs,
        validate_at_start=validate_at_start,
        gradient_accumulation_steps=accumulation,
        patience=patience,
        max_nonfinite_steps=max_nonfinite_steps,
    )
    accelerator = build_accelerator(settings)
    torch.manual_seed(0)
    model = FbankConformer(**TINY, dropout=0.0)
    num_frames = model.num_frames(TASK.chunk_samples)
    loaders = DataLoaderSettings(batch_size=batch_size, persistent_workers=False)
    objective = objective_class(task=TASK)
    optimizers = build_optimizers({"optimizer": Block("torch.optim.SGD", {"lr": lr})}, model, 100, accelerator.device)
    return Trainer(
        accelerator=accelerator,
        model=accelerator.prepare_model(model),
        objective=objective,
        optimizers=optimizers,
        clipper=GradientClipper(ClippingSettings(mode="none")),
        train_loader=EpochLoader(RandomChunks(16, TASK.chunk_samples, num_frames), loaders, seed=0),
        validation_loader=validation_loader(RandomChunks(4, TASK.chunk_samples, num_frames, seed=1), loaders),
        settings=settings,
        checkpoint=CheckpointSettings(keep_last_n=1),
        run_dir=run_dir,
    )


def parameters_of(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.unwrapped_model.parameters()]


# ---------------------------------------------------------------------------------------------------------
# Gradient accumulation


def test_accumulating_two_batches_of_four_equals_one_batch_of_eight(tmp_path):
    one_batch = make_trainer(tmp_path / "a", batch_size=8)
    one_batch.train_epoch(1)
    accumulated = make_trainer(tmp_path / "b", batch_size=4, accumulation=2)
    accumulated.train_epoch(1)
    smaller = make_trainer(tmp_path / "c", batch_size=4)
    smaller.train_epoch(1)
    assert one_batch.state.step == accumulated.state.step == 2 and smaller.state.step == 4
    for a, b, c in zip(parameters_of(one_batch), parameters_of(accumulated), parameters_of(smaller)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # the comparison can fail: plain batches of four take other steps
    assert any(not torch.allclose(a, c, atol=1e-4) for a, c in zip(parameters_of(one_batch), parameters_of(smaller)))
    assert one_batch.state.window["micro_batches"] == 2 and accumulated.state.window["micro_batches"] == 4
    assert one_batch.state.window["train/loss"] / 2 == pytest.approx(
        accumulated.state.window["train/loss"] / 4, rel=1e-5
    )


# ---------------------------------------------------------------------------------------------------------
# Non-finite losses


class NaNOnCalls(PowersetObjective):
    """Returns a NaN loss on the listed training calls (0-based), the true loss otherwise."""

    nan_calls: set[int] = set()

    def __init__(self, *, task: Task) -> None:
        super().__init__(task=task)
        self.calls = 0

    def training_step(self, model, batch):
        terms = super().training_step(model, batch)
        if self.calls in self.nan_calls:
            terms["loss"] = terms["loss"] * float("nan")
        self.calls += 1
        return terms


def test_a_nonfinite_loss_skips_the_update_and_is_counted(tmp_path):
    class NaNOnSecond(NaNOnCalls):
        nan_calls = {1}

    trainer = make_trainer(tmp_path, objective_class=NaNOnSecond)
    trainer.fit()
    assert trainer.state.step == 3 and trainer.state.skipped_updates == 1 and trainer.state.nonfinite_in_a_row == 0
    (row,) = read_metrics(tmp_path / "metrics.jsonl")
    assert row["train/skipped_updates"] == 1 and math.isfinite(row["train/loss"])
    assert all(torch.isfinite(p).all() for p in trainer.unwrapped_model.parameters())


def test_consecutive_nonfinite_losses_abort_with_a_clear_message(tmp_path):
    class AlwaysNaN(NaNOnCalls):
        nan_calls = set(range(100))

    trainer = make_trainer(tmp_path, objective_class=AlwaysNaN, max_nonfinite_steps=3)
    before = parameters_of(trainer)
    with pytest.raises(DiarizenLabError, match="3 updates in a row had a non-finite loss"):
        trainer.fit()
    assert trainer.state.skipped_updates == 3 and trainer.state.step == 0
    assert all(torch.equal(a, b) for a, b in zip(before, parameters_of(trainer)))


# ---------------------------------------------------------------------------------------------------------
# Early stopping


def test_early_stopping_after_patience_validations_without_improvement(tmp_path):
    trainer = make_trainer(tmp_path, max_epochs=6, patience=2, lr=0.0)  # nothing changes: no improvement
    state = trainer.fit()
    assert state.stopped_early and state.epoch == 3 and state.best_epoch == 1 and state.bad_validations == 2
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert (tmp_path / "checkpoints" / "best").resolve().name == "epoch_0001"
    resumed = make_trainer(tmp_path, max_epochs=6, patience=2, lr=0.0)
    assert resumed.fit(resume_from=tmp_path / "checkpoints" / "epoch_0003").epoch == 3  # stays stopped
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 3


def test_validation_at_start_logs_the_untrained_baseline(tmp_path):
    trainer = make_trainer(tmp_path, max_epochs=1, validate_at_start=True)
    trainer.fit()
    baseline, trained = read_metrics(tmp_path / "metrics.jsonl")
    assert (baseline["epoch"], baseline["step"]) == (0, 0) and (trained["epoch"], trained["step"]) == (1, 4)
    assert "train/loss" not in baseline and baseline["val/loss"] != trained["val/loss"]
    assert trainer.state.best_epoch == 1  # the baseline is reported, not a checkpoint candidate
    assert [epoch for epoch, _ in trainer.checkpointer.epochs()] == [1]


# ---------------------------------------------------------------------------------------------------------
# The recipe on a real (synthetic) corpus: exact resume, fine-tuning


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from diarizen_lab.data.synth import synthesize_corpus

    out = tmp_path_factory.mktemp("corpus") / "synth"
    synthesize_corpus(out, minutes=1, seed=0, meeting_minutes=0.5)
    return out


def write_config(directory: Path, corpus: Path, name: str = "run", extra: str = "") -> Path:
    """A tiny Fbank-Conformer config exercising every stateful part: dropout, accumulation, adaptive clipping,
    warm-up + cosine schedule."""
    text = f"""
[meta]
name = "{name}"
exp_dir = "exp"
seed = 3

[task]
chunk_size = 1.0

[model]
path = "diarizen_lab.models.fbank_conformer.FbankConformer"
[model.args]
attention_in = 16
ffn_hidden = 32
num_heads = 2
num_layers = 1
kernel_size = 3
dropout = 0.1

[train_dataset]
path = "diarizen_lab.data.dataset.ChunkDataset"
[train_dataset.args]
data_dir = "{corpus / 'train'}"
chunk_shift = 1.0

[validation_dataset]
path = "diarizen_lab.data.dataset.ChunkDataset"
[validation_dataset.args]
data_dir = "{corpus / 'dev'}"
chunk_shift = 1.0

[dataloader]
batch_size = 4

[optimizer]
path = "torch.optim.AdamW"
[optimizer.args]
lr = 3e-3

[scheduler]
kind = "warmup_cosine"
warmup_steps = 3

[clipping]
mode = "adaptive"
history = 8

[trainer]
max_epochs = 3
gradient_accumulation_steps = 2

[checkpoint]
keep_last_n = 2
{extra}
"""
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


class CrashInEpochTwo(PowersetObjective):
    """Stands for a run killed in the middle of epoch 2 (after the epoch-1 checkpoint)."""

    def on_update(self, step: int) -> None:
        if step == 9:  # 6 updates per epoch
            raise KeyboardInterrupt


def without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith(TIME_PREFIX)} for row in rows]


def test_a_resumed_run_writes_exactly_the_metrics_of_an_uninterrupted_one(tmp_path, corpus):
    uninterrupted = train(load_training_config(write_config(tmp_path, corpus, "straight")))
    assert uninterrupted.epoch == 3 and uninterrupted.step == 18

    path = write_config(tmp_path, corpus, "crashed")
    with pytest.raises(KeyboardInterrupt):  # the [objective] block names the objective
        train(load_training_config(path, ['objective.path="test_training_loop.CrashInEpochTwo"']))
    config = load_training_config(path)
    crashed_dir = tmp_path / "exp" / "crashed"
    assert [row["epoch"] for row in read_metrics(crashed_dir / "metrics.jsonl")] == [1]
    with pytest.raises(DiarizenLabError, match="already has checkpoints: pass --resume"):
        train(config)
    resumed = train(config, resume=True)
    assert (resumed.epoch, resumed.step) == (3, 18)

    straight_rows = read_metrics(tmp_path / "exp" / "straight" / "metrics.jsonl")
    resumed_rows = read_metrics(crashed_dir / "metrics.jsonl")
    assert without_time(resumed_rows) == without_time(straight_rows)  # bit-identical floats
    assert {"train/loss", "val/loss", "val/der", "val/miss", "val/fa", "val/confusion", "lr/main",
            "train/grad_norm_mean", "train/clip_threshold", "time/elapsed_s"} <= set(straight_rows[-1])
    final = [torch.load(d / "exp" / name / "checkpoints" / "epoch_0003" / "model.pt", weights_only=True)["state_dict"]
             for d, name in ((tmp_path, "straight"), (tmp_path, "crashed"))]
    assert all(torch.equal(final[0][key], final[1][key]) for key in final[0])
    checkpoints = sorted(p.name for p in (crashed_dir / "checkpoints").iterdir())
    assert checkpoints[-2:] == ["epoch_0002", "epoch_0003"] and "best" in checkpoints
    resolved = (crashed_dir / "config.toml").read_text()
    assert f'data_dir = "{corpus / "train"}"' in resolved


def test_resume_from_an_explicit_checkpoint_continues_from_it(tmp_path, corpus):
    config = load_training_config(write_config(tmp_path, corpus, extra=""), ["trainer.max_epochs=2"])
    train(config)
    run_dir = tmp_path / "exp" / "run"
    first = read_metrics(run_dir / "metrics.jsonl")
    state = train(config, resume=run_dir / "checkpoints" / "epoch_0001")
    assert state.epoch == 2
    again = read_metrics(run_dir / "metrics.jsonl")
    assert without_time(again) == without_time(first)
    with pytest.raises(InputError, match="no training_state.pt here"):
        train(config, resume=tmp_path)
    other_task = load_training_config(write_config(tmp_path, corpus), ["trainer.max_epochs=3", "task.chunk_size=2.0"])
    with pytest.raises(DiarizenLabError, match=r"\[task\] and the checkpoint .*epoch_0002 describe different tasks"):
        train(other_task, resume=True)


def test_finetune_starts_from_trained_weights(tmp_path, corpus):
    trained = FbankConformer(**TINY, dropout=0.1)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.fill_(0.01)
    save_model(tmp_path / "trained.pt", trained)
    model = FbankConformer(**TINY, dropout=0.1)
    initialise_from(model, tmp_path / "trained.pt", TASK)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))
    with pytest.raises(InputError, match=r"\[finetune\] weights do not fit"):
        initialise_from(FbankConformer(**{**TINY, "attention_in": 8}), tmp_path / "trained.pt", TASK)

    config = load_training_config(
        write_config(tmp_path, corpus, extra=f'[finetune]\ninit_from = "{tmp_path / "trained.pt"}"\n'),
        ["trainer.max_epochs=1", "optimizer.args.lr=0.0"],  # no update: the weights stay the initial ones
    )
    train(config)
    saved = torch.load(tmp_path / "exp" / "run" / "checkpoints" / "epoch_0001" / "model.pt", weights_only=True)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in trained.state_dict().items())
    assert saved["model"]["task"] == {"sample_rate": 16000, "chunk_size": 1.0, "max_speakers_per_chunk": 4,
                                      "max_speakers_per_frame": 2}


def test_finetune_from_a_checkpoint_of_another_task_fails_naming_both(tmp_path, corpus, capsys):
    from diarizen_lab.cli import main

    save_model(tmp_path / "trained.pt", FbankConformer(**{**TINY, "task": Task(chunk_size=2.0)}))
    config = write_config(tmp_path, corpus, extra=f'[finetune]\ninit_from = "{tmp_path / "trained.pt"}"\n')
    assert main(["train", "-C", str(config)]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert f"[task] and [finetune] init_from {tmp_path / 'trained.pt'} describe different tasks" in error
    assert "chunk_size 1.0 vs 2.0" in error
    assert not (tmp_path / "exp" / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("section", "key"), [("model", "chunk_size"), ("train_dataset", "chunk_size"),
                         ("validation_dataset", "max_speakers_per_chunk"), ("train_dataset", "sample_rate")]
)
def test_task_facts_outside_task_are_refused_with_where_to_move_them(tmp_path, corpus, section, key):
    """A dataset chunk size or sample rate can no longer disagree with the model's: there is no key for it."""
    path = write_config(tmp_path, corpus)
    text = path.read_text().replace(f"[{section}.args]\n", f"[{section}.args]\n{key} = 2\n")
    path.write_text(text)
    line = text.splitlines().index(f"{key} = 2") + 1
    with pytest.raises(InputError) as error:
        load_training_config(path)
    assert str(error.value).startswith(f"{path}:{line}: [{section}.args] '{key}' belongs to [task] now")
    assert f"move {key} to [task]" in str(error.value)


def test_configuration_errors_are_one_line_cli_errors(tmp_path, corpus, capsys):
    from diarizen_lab.cli import main

    config = write_config(tmp_path, corpus)
    assert main(["train", "-C", str(config), "--set", "checkpoint.monitor=der"]) == 2
    assert main(["train", "-C", str(config), "--set", "optimizer_big.path=torch.optim.SGD"]) == 2
    monitor, layout = capsys.readouterr().err.strip().splitlines()
    assert monitor.startswith("diarizen-lab: error: ")
    assert monitor.endswith("[checkpoint] monitor must be a 'val/...' metric, got 'der'")
    assert layout == (
        f"diarizen-lab: error: {config}: [optimizer] and [optimizer_small]/[optimizer_big] are exclusive; "
        "keep one layout"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused only without a GPU")
def test_fp16_without_a_gpu_is_refused(tmp_path, corpus, capsys):
    from diarizen_lab.cli import main

    assert main(["train", "-C", str(write_config(tmp_path, corpus)), "--set", "trainer.mixed_precision=fp16"]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("diarizen-lab: error: ")
    assert error.endswith('[trainer] mixed_precision = "fp16" needs a CUDA GPU: use "bf16" or "no" on CPU')


def test_retention_keeps_the_best_epochs_by_the_monitored_metric(tmp_path, corpus):
    path = write_config(tmp_path, corpus, "retention", extra="keep_best_n = 1")
    # "max" so that the best epoch is an early one (the DER of this run falls epoch after epoch)
    train(load_training_config(path, ["checkpoint.keep_last_n=1", 'checkpoint.mode="max"']))
    run_dir = tmp_path / "exp" / "retention"
    rows = read_metrics(run_dir / "metrics.jsonl")
    best = max(rows, key=lambda row: row["val/der"])["epoch"]
    assert best != 3
    kept = sorted(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("epoch_*"))
    assert kept == [best, 3]
    assert (run_dir / "checkpoints" / "best").resolve().name == f"epoch_{best:04d}"


def test_retention_keeps_what_averaging_asks_for_on_ties(tmp_path):
    """val/der 0.3 at epochs 2, 3 and 4, keep_best_n 2: retention and ``average --mode best -n 2`` agree."""
    from diarizen_lab.training.run_dir import average_checkpoints

    class Scripted(PowersetObjective):
        ders = iter([0.5, 0.3, 0.3, 0.3, 0.4])

        def validation_metrics(self, counts):
            return {**super().validation_metrics(counts), "der": next(self.ders)}

    trainer = make_trainer(tmp_path, max_epochs=5, objective_class=Scripted)
    trainer.checkpoint_settings = CheckpointSettings(keep_last_n=1, keep_best_n=2)
    trainer.checkpointer.keep_last_n = 1
    trainer.fit()
    record = average_checkpoints(tmp_path, tmp_path / "avg.pt", mode="best", n=2)
    assert record["epochs"] == [3, 4]
    # 5: the last; 3 and 4: the best two (ties to the later epochs); 2: `best`, the first epoch to reach 0.3
    assert [epoch for epoch, _ in trainer.checkpointer.epochs()] == [2, 3, 4, 5]
