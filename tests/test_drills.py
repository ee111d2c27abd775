"""Crash drills and determinism of training runs (issue: robustness evidence).

A training process is killed with SIGKILL (no cleanup, no ``finally``) at two moments: in the middle of an
epoch, and while a checkpoint directory is being committed. ``--resume`` must then produce exactly the
metrics.jsonl of an uninterrupted run, and every checkpoint directory left on disk must load. The kill is
injected from outside the library: a ``sitecustomize`` module on ``PYTHONPATH`` wraps ``os.replace``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diarizen_lab.models.io import load_model_file
from diarizen_lab.training.checkpoint import load_training_state
from diarizen_lab.training.recipe import load_training_config, train
from diarizen_lab.training.run_dir import read_metrics
from test_training_loop import corpus, without_time, write_config  # noqa: F401  (fixture re-used)

KILLER = """\
import os, signal, sys

_replace = os.replace
_target = os.environ["DRILL_KILL_ON"]  # the checkpoint directory whose commit triggers the kill
_when = os.environ["DRILL_KILL_WHEN"]  # "during": while committing it; "after": 3 training steps later
_steps = []


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _count_training_steps(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "training_step":
        _steps.append(1)
        if len(_steps) == 3:
            _die()


def replace(src, dst, *args, **kwargs):
    if os.path.basename(os.fspath(dst)) == _target and os.path.isdir(src):
        if _when == "during":
            _die()
        _replace(src, dst, *args, **kwargs)
        sys.setprofile(_count_training_steps)  # the training thread: killed in the middle of the next epoch
        return None
    return _replace(src, dst, *args, **kwargs)


os.replace = replace
"""


def train_in_subprocess(
    config: Path, tmp_path: Path, *extra: str, kill: tuple[str, str] | None = None
):
    env = {**os.environ}
    if kill is not None:
        hooks = tmp_path / "hooks"
        hooks.mkdir(exist_ok=True)
        (hooks / "sitecustomize.py").write_text(KILLER)
        env |= {"PYTHONPATH": f"{hooks}{os.pathsep}{env.get('PYTHONPATH', '')}",
                "DRILL_KILL_ON": kill[0], "DRILL_KILL_WHEN": kill[1]}
    return subprocess.run([sys.executable, "-m", "diarizen_lab", "train", "-C", str(config), *extra],
                          capture_output=True, text=True, env=env, timeout=600)


def assert_every_checkpoint_loads(run_dir: Path) -> list[str]:
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    for name in names:
        if name.startswith("epoch_"):
            load_model_file(run_dir / "checkpoints" / name)
            assert "trainer" in load_training_state(run_dir / "checkpoints" / name)
    return names


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus):  # noqa: F811
    directory = tmp_path_factory.mktemp("reference")
    train(load_training_config(write_config(directory, corpus, "straight")))
    return read_metrics(directory / "exp" / "straight" / "metrics.jsonl")


@pytest.mark.parametrize(
    "kill, survivors, last_logged_epoch",
    [
        (("epoch_0001", "after"), ["best", "epoch_0001"], 1),  # killed at the 3rd step of epoch 2
        # killed while committing epoch 2's checkpoint, after its validation row was logged
        (("epoch_0002", "during"), ["best", "epoch_0001"], 2),
    ],
    ids=["mid-epoch", "during-checkpoint-write"],
)
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(
    tmp_path, corpus, reference, kill, survivors, last_logged_epoch  # noqa: F811
):
    config = write_config(tmp_path, corpus, "drill")
    run_dir = tmp_path / "exp" / "drill"
    killed = train_in_subprocess(config, tmp_path, kill=kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # what the crash left: complete checkpoints only (a half-committed one is a hidden temporary directory)
    assert [n for n in assert_every_checkpoint_loads(run_dir) if not n.startswith(".")] == survivors
    assert read_metrics(run_dir / "metrics.jsonl")[-1]["epoch"] == last_logged_epoch

    resumed = train_in_subprocess(config, tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert without_time(read_metrics(run_dir / "metrics.jsonl")) == without_time(reference)
    names = assert_every_checkpoint_loads(run_dir)
    assert not [n for n in names if n.startswith(".")], f"temporaries left behind: {names}"


def test_same_seed_same_metrics_different_seed_different_metrics(tmp_path, corpus, reference):  # noqa: F811
    again = train(load_training_config(write_config(tmp_path, corpus, "again")))
    assert again.epoch == 3
    assert without_time(read_metrics(tmp_path / "exp" / "again" / "metrics.jsonl")) == without_time(reference)
    train(load_training_config(write_config(tmp_path, corpus, "other_seed"), ["meta.seed=4"]))
    other = read_metrics(tmp_path / "exp" / "other_seed" / "metrics.jsonl")
    assert [row["train/loss"] for row in other] != [row["train/loss"] for row in reference]


def test_distill_prune_survives_sigkill_mid_epoch(tmp_path):
    """The same drill for the distill-prune run: gates, multipliers and the sparsity schedule resume exactly."""
    from diarizen_lab.models.wavlm import WavLM, get_preset
    from diarizen_lab.models.wavlm.formats import save_wavlm
    from test_pruning_train import CONFIG, write_data_dir

    train_dir = write_data_dir(tmp_path / "train", [12.0], seed=0)
    dev_dir = write_data_dir(tmp_path / "dev", [4.0], seed=1)
    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pt"
    save_wavlm(teacher, WavLM(get_preset("wavlm_tiny")))

    def overrides(name: str) -> list[str]:
        settings = [f'meta.exp_dir="{tmp_path}"', f'meta.name="{name}"', f'objective.args.teacher="{teacher}"',
                    f'train_dataset.args.data_dir="{train_dir}"',
                    f'validation_dataset.args.data_dir="{dev_dir}"', "objective.args.warmup_steps=10",
                    "train_dataset.args.chunk_shift=1.0", "trainer.max_epochs=3"]
        return [argument for setting in settings for argument in ("--set", setting)]

    straight = train_in_subprocess(CONFIG, tmp_path, *overrides("straight"))
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = train_in_subprocess(CONFIG, tmp_path, *overrides("drill"), kill=("epoch_0001", "after"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [n for n in assert_every_checkpoint_loads(tmp_path / "drill") if not n.startswith(".")] == [
        "best", "epoch_0001"]
    resumed = train_in_subprocess(CONFIG, tmp_path, *overrides("drill"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = without_time(read_metrics(tmp_path / "straight" / "metrics.jsonl"))
    assert without_time(read_metrics(tmp_path / "drill" / "metrics.jsonl")) == reference
    assert "train/expected_sparsity" in reference[-1] and "train/lambda1" in reference[-1]
