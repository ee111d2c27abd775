"""Checkpoint averaging: epoch selection from metrics.jsonl and the averaged weights."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from diarizen_lab.cli import main
from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.training.run_dir import (
    EpochScore,
    average_checkpoints,
    infer_metric_mode,
    read_metric,
    select_epochs,
)
from diarizen_lab.training.run_dir import model_path as checkpoint_path
from diarizen_lab.models.io import load_checkpoint, save_model

VAL_DER = {1: 0.30, 2: 0.25, 3: 0.22, 4: 0.24, 5: 0.20, 6: 0.21, 7: 0.26, 8: 0.23}


class TinyNet(nn.Sequential):
    """Linear -> BatchNorm -> Linear, plus a float16 buffer: floating, integer and half-precision state."""

    def __init__(self, width: int = 4) -> None:
        super().__init__(nn.Linear(3, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 2))
        self.width = width
        self.register_buffer("scale", torch.ones(2, dtype=torch.float16))

    def architecture(self) -> dict:
        return {"path": f"{__name__}.TinyNet", "args": {"width": self.width}}


def trained_net(epoch: int, width: int = 4) -> TinyNet:
    torch.manual_seed(epoch)
    net = TinyNet(width).train()
    for _ in range(epoch):  # BatchNorm running stats and num_batches_tracked differ per epoch
        net(torch.randn(8, 3))
    net.scale.fill_(0.5 * epoch)
    return net


@pytest.fixture
def exp_dir(tmp_path):
    exp = tmp_path / "exp" / "run"
    rows = [{"epoch": 2, "step": 150, "val/der": 0.9}]  # an earlier validation of epoch 2: the last one counts
    for epoch, der in VAL_DER.items():
        rows.append({"epoch": epoch, "step": 100 * epoch, "train/loss": 1.0 / epoch})  # no val/der: skipped
        rows.append({"epoch": epoch, "step": 100 * epoch, "val/der": der, "val/loss": der + 1})
        save_model(checkpoint_path(exp, epoch), trained_net(epoch), meta={"epoch": epoch})
    (exp / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return exp


def test_read_metric_keeps_last_validation_per_epoch(exp_dir):
    scores = read_metric(exp_dir, "val/der")
    assert [s.epoch for s in scores] == list(VAL_DER)
    assert scores[1] == EpochScore(2, 0.25)


@pytest.mark.parametrize(
    ("mode", "n", "metric_mode", "epochs"),
    [
        ("best", 3, "min", [3, 5, 6]),
        ("last", 3, "min", [6, 7, 8]),
        ("window", 3, "min", [4, 5, 6]),  # means: .257 .237 .220 .217 .223 .233
        ("best", 2, "max", [1, 7]),
        ("window", 2, "max", [1, 2]),
        ("best", 8, "min", list(VAL_DER)),
        ("prev", 3, "min", [3, 4, 5]),  # upstream DiariZen's val_mode = prev: the best (5) and the epochs before
        ("center", 3, "min", [4, 5, 6]),
    ],
)
def test_select_epochs(exp_dir, mode, n, metric_mode, epochs):
    assert [s.epoch for s in select_epochs(read_metric(exp_dir, "val/der"), mode, n, metric_mode)] == epochs


def test_ties_go_to_recent_epochs():
    scores = [EpochScore(e, v) for e, v in [(1, 0.1), (2, 0.2), (3, 0.1), (4, 0.2)]]
    assert [s.epoch for s in select_epochs(scores, "best", 1, "min")] == [3]
    assert [s.epoch for s in select_epochs(scores, "window", 2, "min")] == [3, 4]


def test_metric_mode_is_inferred_from_the_name():
    assert infer_metric_mode("val/der") == "min"
    assert infer_metric_mode("train/loss") == "min"
    assert infer_metric_mode("val/accuracy") == "max"
    with pytest.raises(DiarizenLabError, match="--metric-mode"):
        infer_metric_mode("val/speakers")


def test_average_equals_hand_average(exp_dir, tmp_path):
    output = tmp_path / "avg.pt"
    record = average_checkpoints(exp_dir, output, metric="val/der", mode="best", n=3)
    assert record["epochs"] == [3, 5, 6] and record["values"] == [0.22, 0.20, 0.21]
    assert record["mode"] == "best" and record["metric_mode"] == "min"

    averaged = load_checkpoint(output)
    assert averaged["meta"]["averaging"] == record
    assert averaged["meta"]["epoch"] == 6  # the rest of the newest epoch's meta is kept
    nets = [trained_net(epoch).state_dict() for epoch in (3, 5, 6)]
    for key, tensor in averaged["state_dict"].items():
        assert tensor.dtype == nets[0][key].dtype, key
        if tensor.is_floating_point():
            expected = (sum(net[key].double() for net in nets) / 3).to(tensor.dtype)
            assert torch.equal(tensor, expected), key
        else:
            assert torch.equal(tensor, nets[-1][key]), key
    assert averaged["state_dict"]["1.num_batches_tracked"].item() == 6
    assert averaged["state_dict"]["scale"].tolist() == [torch.tensor(7 / 3, dtype=torch.float16).item()] * 2

    assert averaged["model"] == trained_net(6).architecture()  # a regular self-describing checkpoint


def test_cli_prints_epochs_and_writes_atomically(exp_dir, capsys):
    assert main(["average", "-e", str(exp_dir), "--mode", "window", "-n", "3"]) == 0
    out = capsys.readouterr().out
    output = exp_dir / "avg_window_3.pt"
    assert f"wrote {output}" in out
    assert [line.split()[1] for line in out.splitlines() if line.strip().startswith("epoch")] == ["4", "5", "6"]
    assert "val/der = 0.24" in out
    assert load_checkpoint(output)["meta"]["averaging"]["epochs"] == [4, 5, 6]
    assert not [p for p in exp_dir.iterdir() if p.name.endswith(".tmp")]


def test_errors_are_clear(exp_dir, tmp_path, capsys):
    with pytest.raises(InputError, match="no metrics.jsonl"):
        average_checkpoints(tmp_path, tmp_path / "x.pt")
    with pytest.raises(DiarizenLabError, match="only 8 validated epoch"):
        average_checkpoints(exp_dir, tmp_path / "x.pt", n=9)

    shutil.rmtree(checkpoint_path(exp_dir, 3).parent)  # e.g. deleted by keep_last_n
    assert main(["average", "-e", str(exp_dir), "-n", "3", "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "selected epoch(s) 3" in err and "epochs on disk: 1, 2, 4, 5, 6, 7, 8" in err
    assert not (tmp_path / "x.pt").exists()

    save_model(checkpoint_path(exp_dir, 5), trained_net(5, width=6))
    with pytest.raises(DiarizenLabError, match="different architecture"):
        average_checkpoints(exp_dir, tmp_path / "x.pt", mode="last", n=4)

    with open(exp_dir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 9, "val/der": "n/a"}\n')
    with open(exp_dir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 10, "val/der": 0.1}\n')
    with pytest.raises(InputError, match=r"metrics.jsonl:18: 'val/der' is 'n/a', not a number"):
        read_metric(exp_dir, "val/der")


def test_a_nonfinite_validation_is_skipped_and_reported(exp_dir, tmp_path, capsys):
    with open(exp_dir / "metrics.jsonl", "a") as f:  # epoch 5 (the best) validated again and diverged
        f.write('{"epoch": 5, "step": 500, "val/der": NaN}\n')
    record = average_checkpoints(exp_dir, tmp_path / "avg.pt", mode="best", n=3)
    assert record["epochs"] == [3, 6, 8] and record["skipped_nonfinite"] == [5]
    assert main(["average", "-e", str(exp_dir), "--mode", "last", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "skipped epoch(s) 5: non-finite val/der" in out
    assert load_checkpoint(exp_dir / "avg_last_2.pt")["meta"]["averaging"]["epochs"] == [7, 8]


def test_a_last_line_cut_short_by_a_crash_is_ignored(exp_dir, tmp_path):
    with open(exp_dir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 9, "step": 900, "val/d')
    assert [s.epoch for s in read_metric(exp_dir, "val/der")] == list(VAL_DER)
    assert average_checkpoints(exp_dir, tmp_path / "avg.pt", mode="last", n=2)["epochs"] == [7, 8]


def test_after_peak_picks_the_best_epochs_after_the_worst_one():
    scores = [EpochScore(e, v) for e, v in [(1, 1.0), (2, 3.0), (3, 2.0), (4, 3.0), (5, 1.5), (6, 2.5), (7, 1.2)]]
    assert [s.epoch for s in select_epochs(scores, "after_peak", 2, "min")] == [5, 7]  # peak: epoch 4 (the last)
    with pytest.raises(DiarizenLabError, match="only 3 validated epoch"):
        select_epochs(scores, "after_peak", 4, "min")


def test_mismatched_keys_name_the_checkpoint(exp_dir, tmp_path):
    path = checkpoint_path(exp_dir, 8)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(checkpoint, path)
    with pytest.raises(
        DiarizenLabError,
        match=r"epoch_0006/model.pt does not have the same parameters as .*epoch_0008/model.pt "
        r"\(missing: extra.weight; unexpected: none\)",
    ):
        average_checkpoints(exp_dir, tmp_path / "x.pt", mode="last", n=3)


@pytest.mark.parametrize("mode", ["prev", "center"])
def test_epochs_around_the_best_must_exist(exp_dir, mode):
    with pytest.raises(DiarizenLabError, match="cannot average [23] epochs .* the best one \\(epoch 1\\)"):
        select_epochs(read_metric(exp_dir, "val/der"), mode, 2 if mode == "prev" else 3, "max")
