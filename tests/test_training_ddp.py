"""Two-process DDP training on CPU through ``accelerate launch``: one set of files, consistent values."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diarizen_lab.training.recipe import load_training_config, train
from diarizen_lab.training.run_log import read_metrics
from test_training_loop import corpus, write_config  # noqa: F401  (the corpus fixture is used by name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args: str, processes: int = 2, cwd: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        "-m", "diarizen_lab", "train", *args,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def test_two_process_ddp_run_matches_one_process_with_the_same_global_batch(tmp_path, corpus):
    """2 processes x batch 4 see the same chunks per update as 1 process x batch 8 (the sampler interleaves
    them), DDP averages their gradients and validation sums the counts of both shares: without dropout, the
    two runs must report the same numbers."""
    no_dropout = ["trainer.max_epochs=2", "model.args.dropout=0.0"]
    config = write_config(tmp_path, corpus, "ddp")
    result = launch("-C", str(config), *(f"--set={item}" for item in no_dropout), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    train(load_training_config(write_config(tmp_path, corpus, "single"), [*no_dropout, "dataloader.batch_size=8"]))

    run_dir = tmp_path / "exp" / "ddp"
    rows = read_metrics(run_dir / "metrics.jsonl")
    single = read_metrics(tmp_path / "exp" / "single" / "metrics.jsonl")
    assert [(row["epoch"], row["step"]) for row in rows] == [(1, 3), (2, 6)]  # 2 processes share the batches
    assert [(row["epoch"], row["step"]) for row in single] == [(1, 3), (2, 6)]
    for ddp_row, single_row in zip(rows, single):
        for key in ("train/loss", "train/grad_norm_mean", "lr/main", "val/loss", "val/der", "val/miss", "val/fa"):
            assert ddp_row[key] == pytest.approx(single_row[key], rel=1e-4, abs=1e-6), key

    files = ["checkpoints", "config.toml", "curves.png", "metrics.jsonl", "tb"]
    assert sorted(p.name for p in run_dir.iterdir()) == files
    assert len(list((run_dir / "tb").iterdir())) == 1  # only the main process logs
    state = torch.load(run_dir / "checkpoints" / "epoch_0002" / "training_state.pt", weights_only=True)
    assert len(state["rng"]) == 2  # the random streams of both processes
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    assert result.stdout.count("epoch 2 step 6:") == 1  # one summary line: the main process's
