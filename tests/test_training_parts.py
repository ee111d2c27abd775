"""Building blocks of the trainer: parameter split, schedules, clipping, loss, DER counts, logs, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pyannote.audio.utils.powerset import Powerset
from torch import nn

from diarizen_lab.config import Block
from diarizen_lab.data.task import Task
from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.models.fbank_conformer import FbankConformer
from diarizen_lab.models.io import load_model_file
from diarizen_lab.models.wavlm_conformer import WavLMConformer
from diarizen_lab.training.checkpoint import Checkpointer, load_training_state, resolve_checkpoint
from diarizen_lab.training.clipping import GradientClipper
from diarizen_lab.training.loss import powerset_nll, powerset_targets
from diarizen_lab.training.metrics import der_counts, der_rates
from diarizen_lab.training.optim import NamedOptimizer, build_optimizers, check_partition, split_parameters
from diarizen_lab.training.run_dir import read_metrics
from diarizen_lab.training.run_log import RunLog
from diarizen_lab.training.schedulers import LRMultiplier, build_scheduler
from diarizen_lab.training.settings import ClippingSettings, ScheduleSettings

TINY_CONFORMER = dict(
    task=Task(chunk_size=1.0), attention_in=16, ffn_hidden=32, num_heads=2, num_layers=1, kernel_size=3
)


def tiny_wavlm_conformer(**kwargs) -> WavLMConformer:
    return WavLMConformer(wavlm="random:wavlm_tiny", **TINY_CONFORMER, **kwargs)


ADAMW = Block("torch.optim.AdamW", {"lr": 1e-3})


# ---------------------------------------------------------------------------------------------------------
# Optimizers


def test_dual_split_covers_every_trainable_parameter_once():
    model = tiny_wavlm_conformer()
    groups = split_parameters(model, ["small", "big"])
    small, big = {id(p) for p in groups["small"]}, {id(p) for p in groups["big"]}
    assert small and big and not small & big
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert small | big == trainable
    assert small == {id(p) for p in model.wavlm.parameters()}


def test_build_dual_optimizers_with_their_own_learning_rates_and_schedules():
    model = tiny_wavlm_conformer()
    config = {
        "optimizer_small": Block("torch.optim.AdamW", {"lr": 2e-5}),
        "optimizer_big": ADAMW,
        "scheduler_small": ScheduleSettings(kind="linear_warmup", warmup_steps=4),
        "scheduler_big": None,
    }
    small, big = build_optimizers(config, model, total_steps=100, device=torch.device("cpu"))
    assert (small.name, big.name) == ("small", "big")
    assert small.optimizer.param_groups[0]["lr"] == pytest.approx(2e-5 / 5)  # first warm-up step
    assert big.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # constant by default
    assert "fused" not in small.optimizer.defaults or not small.optimizer.defaults["fused"]


def test_frozen_wavlm_needs_a_single_optimizer():
    model = tiny_wavlm_conformer(freeze_wavlm=True)
    with pytest.raises(DiarizenLabError, match=r"\[optimizer_small\] would get no trainable parameter"):
        split_parameters(model, ["small", "big"])
    (main,) = build_optimizers({"optimizer": ADAMW}, model, 10, torch.device("cpu"))
    assert {id(p) for p in main.parameters()} == {id(p) for p in model.parameters() if p.requires_grad}
    assert not any(id(p) in {id(q) for q in main.parameters()} for p in model.wavlm.parameters())


def test_fbank_model_cannot_use_dual_optimizers():
    model = FbankConformer(**TINY_CONFORMER)
    config = {"optimizer_small": ADAMW, "optimizer_big": ADAMW}
    with pytest.raises(DiarizenLabError, match="no trainable parameter"):
        build_optimizers(config, model, 10, torch.device("cpu"))


def test_optimizer_layouts_are_exclusive():
    model = FbankConformer(**TINY_CONFORMER)
    with pytest.raises(DiarizenLabError, match="exclusive"):
        build_optimizers({"optimizer": ADAMW, "optimizer_big": ADAMW}, model, 10, torch.device("cpu"))
    with pytest.raises(DiarizenLabError, match=r"add \[optimizer\]"):
        build_optimizers({"optimizer_big": ADAMW}, model, 10, torch.device("cpu"))
    with pytest.raises(DiarizenLabError, match=r"\[scheduler_big\] is not used"):
        build_optimizers(
            {"optimizer": ADAMW, "scheduler_big": ScheduleSettings()}, model, 10, torch.device("cpu")
        )


def test_parameters_claimed_by_an_objective_leave_the_configured_optimizers():
    model = tiny_wavlm_conformer()
    weights = list(model.layer_weighting.parameters())
    gates = NamedOptimizer("gates", torch.optim.SGD(weights, lr=0.1), clip=False)
    optimizers = build_optimizers(
        {"optimizer_small": ADAMW, "optimizer_big": ADAMW}, model, 10, torch.device("cpu"), extra=[gates]
    )
    assert [named.name for named in optimizers] == ["small", "big", "gates"]
    assert not {id(p) for p in weights} & {id(p) for p in optimizers[1].parameters()}


def test_partition_check_names_duplicated_and_missing_parameters():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    first = NamedOptimizer("a", torch.optim.SGD(model[0].parameters(), lr=1.0))
    with pytest.raises(DiarizenLabError, match=r"in no optimizer: 1\.weight, 1\.bias"):
        check_partition(model, [first])
    twice = NamedOptimizer("b", torch.optim.SGD(model.parameters(), lr=1.0))
    with pytest.raises(DiarizenLabError, match="'0.weight' is in optimizers 'a' and 'b'"):
        check_partition(model, [first, twice])


# ---------------------------------------------------------------------------------------------------------
# Schedules


def _learning_rates(settings: ScheduleSettings, total_steps: int, steps: int) -> list[float]:
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = build_scheduler(optimizer, settings, total_steps)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_schedule_shapes():
    assert _learning_rates(ScheduleSettings(), 10, 3) == [1.0, 1.0, 1.0]
    assert _learning_rates(ScheduleSettings("linear_warmup", warmup_steps=3), 10, 6) == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    )
    cosine = _learning_rates(ScheduleSettings("warmup_cosine", warmup_steps=2, min_lr_ratio=0.1), 12, 14)
    assert cosine[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert cosine[7] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half-way: 0.55
    assert cosine[12:] == pytest.approx([0.1, 0.1])
    linear = _learning_rates(ScheduleSettings("warmup_linear", warmup_steps=1), 5, 6)
    assert linear == pytest.approx([0.5, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_schedule_state_round_trips_through_a_checkpoint():
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = build_scheduler(optimizer, ScheduleSettings("warmup_linear", warmup_steps=2), 10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    other_optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    other = build_scheduler(other_optimizer, ScheduleSettings(), 10)
    other.load_state_dict(scheduler.state_dict())
    assert other.get_last_lr() == scheduler.get_last_lr()
    assert isinstance(other.lr_lambdas[0], LRMultiplier) and other.lr_lambdas[0].kind == "warmup_linear"


def test_constant_schedule_refuses_a_warmup():
    with pytest.raises(DiarizenLabError, match="linear_warmup"):
        ScheduleSettings(kind="constant", warmup_steps=3)


# ---------------------------------------------------------------------------------------------------------
# Clipping


def _gradients(norm: float) -> list[nn.Parameter]:
    parameter = nn.Parameter(torch.zeros(4))
    parameter.grad = torch.full((4,), norm / 2.0)  # L2 norm of four equal entries
    return [parameter]


def test_fixed_clipping_scales_to_max_norm():
    clipper = GradientClipper(ClippingSettings(mode="fixed", max_norm=1.0))
    parameters = _gradients(4.0)
    norm = clipper.total_norm(parameters)
    assert norm.item() == pytest.approx(4.0)
    clipper.clip(parameters, norm)
    assert clipper.total_norm(parameters).item() == pytest.approx(1.0, rel=1e-5)


def test_adaptive_clipping_follows_the_percentile_of_recent_norms():
    clipper = GradientClipper(ClippingSettings(mode="adaptive", percentile=90.0, history=10))
    assert clipper.threshold() is None  # nothing seen yet: no clipping
    for norm in range(1, 11):  # 1..10
        clipper.observe(float(norm))
    assert clipper.threshold() == pytest.approx(9.1)  # numpy's linear interpolation
    for _ in range(10):  # the window forgets the old norms
        clipper.observe(2.0)
    assert clipper.threshold() == pytest.approx(2.0)
    parameters = _gradients(50.0)  # a spike is clipped to what recent updates looked like
    clipper.clip(parameters, clipper.total_norm(parameters))
    assert clipper.total_norm(parameters).item() == pytest.approx(2.0, rel=1e-5)
    restored = GradientClipper(ClippingSettings(mode="adaptive", percentile=90.0, history=10))
    restored.load_state_dict(clipper.state_dict())
    assert restored.threshold() == clipper.threshold() and restored.norms.maxlen == 10


def test_no_clipping_leaves_gradients_alone():
    clipper = GradientClipper(ClippingSettings(mode="none"))
    parameters = _gradients(40.0)
    clipper.clip(parameters, clipper.total_norm(parameters))
    assert clipper.total_norm(parameters).item() == pytest.approx(40.0)


# ---------------------------------------------------------------------------------------------------------
# Loss and DER counts


def _log_probs(classes: torch.Tensor, num_classes: int, confidence: float = 0.9) -> torch.Tensor:
    """Log-probabilities putting ``confidence`` on the given powerset class of each frame."""
    probs = torch.full((*classes.shape, num_classes), (1 - confidence) / (num_classes - 1))
    probs.scatter_(-1, classes.unsqueeze(-1), confidence)
    return probs.log()


def test_powerset_loss_is_invariant_to_speaker_order():
    powerset = Powerset(3, 2)  # classes: {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}
    target = torch.zeros(1, 6, 3)
    target[0, :3, 0] = 1
    target[0, 2:, 1] = 1
    swapped = target[:, :, [1, 0, 2]]
    # prediction: {0}, {0}, {0,1}, {1}, {1}, {1}
    log_probs = _log_probs(torch.tensor([[1, 1, 4, 2, 2, 2]]), 7)
    assert powerset_targets(log_probs, swapped, powerset).tolist() == [[1, 1, 4, 2, 2, 2]]
    loss = powerset_nll(log_probs, target, powerset)
    assert loss.item() == pytest.approx(-math.log(0.9), rel=1e-5)
    assert powerset_nll(log_probs, swapped, powerset).item() == pytest.approx(loss.item())


def test_der_counts_are_frame_sums():
    powerset = Powerset(2, 2)  # {}, {0}, {1}, {0,1}
    target = torch.tensor([[[1, 0], [1, 0], [1, 1], [0, 1], [0, 0]]], dtype=torch.float32)
    # predicted: {1} {1} {1} {0} {0}: speaker swap (no error) except frame 2 (miss) and frame 4 (false alarm)
    log_probs = _log_probs(torch.tensor([[2, 2, 2, 1, 1]]), 4)
    counts = {k: v.item() for k, v in der_counts(log_probs, target, powerset).items()}
    assert counts == {"false_alarm": 1.0, "missed_detection": 1.0, "confusion": 0.0, "speech": 5.0}
    assert der_rates(counts) == pytest.approx({"der": 0.4, "miss": 0.2, "fa": 0.2, "confusion": 0.0})


# ---------------------------------------------------------------------------------------------------------
# Logs


def test_metrics_log_is_truncated_to_the_resumed_epoch(tmp_path):
    log = RunLog(tmp_path, enabled=True)
    log.start(resumed_epoch=None, resumed_step=0)
    for epoch in (1, 2, 3):
        log.append({"epoch": epoch, "step": 10 * epoch, "train/loss": 1.0 / epoch, "val/der": 0.5 / epoch})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "st')  # a row cut short by a crash
    assert [row["epoch"] for row in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]
    resumed = RunLog(tmp_path, enabled=True)
    resumed.start(resumed_epoch=2, resumed_step=20)
    resumed.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert any((tmp_path / "tb").iterdir())


def test_a_corrupt_metrics_row_is_reported_with_its_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(InputError, match=r"metrics.jsonl:2"):
        read_metrics(tmp_path / "metrics.jsonl")


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


class Unpicklable:
    """Fails in the middle of ``torch.save``, as a full disk or a crash would."""

    def __reduce__(self):
        raise OSError("disk full")


def _save(checkpointer: Checkpointer, model: nn.Module, epoch: int, is_best: bool = False, **state) -> Path:
    return checkpointer.save(epoch, model, {"trainer": {"epoch": epoch}, **state}, {"epoch": epoch}, is_best)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path):
    model = FbankConformer(**TINY_CONFORMER)
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep_last_n=2)
    first = _save(checkpointer, model, 1, is_best=True)
    with pytest.raises(OSError, match="disk full"):
        _save(checkpointer, model, 2, broken=Unpicklable())
    with pytest.raises(OSError, match="disk full"):  # overwriting an existing epoch fails the same way
        _save(checkpointer, model, 1, broken=Unpicklable())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best", "epoch_0001"]
    assert checkpointer.latest() == first and resolve_checkpoint(tmp_path) == first
    killed = tmp_path / "checkpoints" / ".epoch_0002.abc123.tmp"  # what a SIGKILL during a save leaves
    (killed / "model.pt").parent.mkdir()
    (killed / "model.pt").write_bytes(b"half")
    assert checkpointer.latest() == first
    checkpointer.remove_stale_temporaries()
    assert not killed.exists()
    assert load_training_state(first) == {"trainer": {"epoch": 1}}
    reloaded = load_model_file(first)
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))


def test_retention_keeps_the_last_n_and_the_best(tmp_path):
    model = FbankConformer(**TINY_CONFORMER)
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep_last_n=2)
    for epoch in range(1, 6):
        _save(checkpointer, model, epoch, is_best=epoch == 2)
    assert [epoch for epoch, _ in checkpointer.epochs()] == [2, 4, 5]
    assert checkpointer.best().name == "epoch_0002"
    assert load_model_file(tmp_path).training is False  # the experiment dir resolves to checkpoints/best


def test_retention_keeps_the_epochs_named_in_keep(tmp_path):
    model = FbankConformer(**TINY_CONFORMER)
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep_last_n=1)
    for epoch in range(1, 6):
        checkpointer.save(epoch, model, {}, {}, is_best=epoch == 3, keep=[1, 3])
    assert [epoch for epoch, _ in checkpointer.epochs()] == [1, 3, 5]


def test_missing_or_corrupt_training_state_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no training_state.pt here"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "training_state.pt").write_bytes(b"truncated")
    with pytest.raises(InputError, match="cannot read training state"):
        load_training_state(tmp_path)
