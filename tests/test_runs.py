"""Runs that cannot corrupt each other, and values refused before they can do harm (issue 16, second part).

- bad values through the command that reads them (``tests/bad_inputs/runs/``, see its README section): exit 2,
  one line naming the file and line (or the key), nothing written;
- one run per experiment directory: a second ``train`` into a held directory exits 2 naming the holder; the lock
  of a SIGKILLed run is taken over;
- ``--resume`` with a changed config is refused with the list of changes, and ``config.toml`` is left as it was;
  ``--resume-with-changes`` applies the changes and records them in ``config.history.toml``;
- a non-finite validation metric never makes an epoch "best";
- the pruning path (a training config with a distill-prune ``[objective]``) gets the same lock and load-time checks.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from diarizen_lab.cli import main
from diarizen_lab.pruning import DistillPruneObjective
from diarizen_lab.training.resume_check import config_changes, run_changing
from diarizen_lab.training.run_lock import LOCK_FILE, RunLock
from diarizen_lab.training.run_dir import is_selectable, rank_epochs, read_metric, read_metrics
from test_bad_inputs import DIARIZE, ERROR_PREFIX, MODEL, corpus, expand, tiny_model  # noqa: F401  (fixture)
from test_training_loop import make_trainer

CONFIG = "{c}/runs/tiny.toml"
TRAIN = f"train -C {CONFIG} --set "
CLIPPED = "{c}/audio/clipped.wav"
PRUNE_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "prune_tiny.toml"
DISTILL = "diarizen_lab.pruning.DistillPruneObjective"


@pytest.fixture(scope="module")
def runs(corpus):  # noqa: F811
    """The corpus copy with a training corpus under ``runs/data`` and a model holding a NaN weight."""
    from diarizen_lab.data.synth import synthesize_corpus
    from diarizen_lab.models.io import save_model

    synthesize_corpus(corpus / "runs" / "data", minutes=1, seed=0, meeting_minutes=0.5)
    model = tiny_model()
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    save_model(corpus / "checkpoints" / "nan_weights.pt", model)
    return corpus


@dataclass(frozen=True)
class Refused:
    """A refused value: the command line, the text the one-line message holds, and what it must name: a corpus
    path (``path[:line]``), or an absolute path, or (``key``) the setting."""

    id: str
    argv: str
    message: str
    where: str | None = None
    key: str | None = None


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="refused only without a GPU")

REFUSED = [
    # settings of a training config, refused when it loads
    Refused("negative-lr", TRAIN + "optimizer.args.lr=-1.0", "Invalid learning rate: -1.0", "runs/tiny.toml:38"),
    Refused("negative-weight-decay", TRAIN + "optimizer.args.weight_decay=-0.1", "Invalid weight_decay value: -0.1",
            "runs/tiny.toml:37"),
    Refused("zero-batch-size", TRAIN + "dataloader.batch_size=0", "batch_size must be >= 1", "runs/tiny.toml:33"),
    Refused("zero-epochs", TRAIN + "trainer.max_epochs=0", "max_epochs must be >= 1", "runs/tiny.toml:49"),
    Refused("percentile-out-of-range", TRAIN + "clipping.percentile=150.0", "percentile must be in (0, 100]",
            "runs/tiny.toml:46"),
    Refused("negative-seed", TRAIN + "meta.seed=-1", "seed must be in [0, 2**32)", "runs/tiny.toml:5"),
    Refused("empty-name", TRAIN + 'meta.name=""', "name must be a plain directory name", "runs/tiny.toml:3"),
    Refused("name-escapes-exp-dir", TRAIN + 'meta.name="../../escaped"', "name must be a plain directory name",
            "runs/tiny.toml:3"),
    Refused("unwritable-exp-dir", TRAIN + 'meta.exp_dir="/proc/diarizen_lab_exp"',
            "cannot write the experiment directory", "/proc/diarizen_lab_exp/bad_run_case"),
    Refused("name-with-a-slash", TRAIN + 'meta.name="a/b"', "name must be a plain directory name", "runs/tiny.toml:3"),
    # settings refused by what they configure, before anything is trained or written
    Refused("heads-do-not-divide-width", TRAIN + "model.args.num_heads=3", "must be divisible by num_heads (3)",
            "runs/tiny.toml"),
    Refused("chunk-below-receptive-field", TRAIN + "task.chunk_size=0.01",
            "chunk_size = 0.01 s is shorter than the model's receptive field", "runs/tiny.toml:8"),
    Refused("unknown-monitor", TRAIN + "checkpoint.monitor=val/dre",
            "monitor 'val/dre' is not a metric of this run (choose one of val/confusion, val/der,",
            "runs/tiny.toml:52"),
    # diarization settings, devices, outputs, weights
    Refused("window-below-receptive-field", DIARIZE + CLIPPED + " --set diarization.window=0.001",
            "window = 0.001 s is shorter than the model's receptive field", key="[diarization] window"),
    Refused("bogus-ahc-method", DIARIZE + CLIPPED + " --set diarization.ahc_method=bogus",
            "ahc_method must be one of average, centroid", key="[diarization]"),
    Refused("zero-embedding-batch-size", DIARIZE + CLIPPED + " --set diarization.embedding_batch_size=0",
            "embedding_batch_size must be >= 1", key="[diarization]"),
    pytest.param(Refused("cuda-without-gpu", DIARIZE + CLIPPED + " --device cuda", "no CUDA GPU is visible",
                         key="--device cuda"), marks=NO_GPU),
    Refused("unknown-device", DIARIZE + CLIPPED + " --device gpu0", "is not a torch device", key="--device"),
    Refused("unwritable-output", f"diarize -c {MODEL} -i {CLIPPED} -o /proc/diarizen_lab_out",
            "cannot write the -o output directory", "/proc/diarizen_lab_out"),
    Refused("nan-weights", DIARIZE + CLIPPED + " -c {c}/checkpoints/nan_weights.pt",
            "weight 'classifier.weight' holds 1 NaN or infinite value(s)", "checkpoints/nan_weights.pt"),
]


def one_line_error(argv: list[str], capsys) -> str:
    """Run the CLI; return its one error line after checking exit status 2 and no traceback."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if "batch/s" not in line]
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), captured.err
    return lines[0]


@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case.id)
def test_bad_value_is_refused_in_one_line_and_writes_nothing(case, runs, tmp_path, capsys):
    out = tmp_path / "out"
    message = one_line_error(expand(case.argv, runs, out), capsys)
    assert case.message in message
    if case.where is not None:
        where = case.where if case.where.startswith("/") else f"{runs}/{case.where}"
        assert where in message, message
    if case.key is not None:
        assert case.key in message, message
    assert not out.exists() and not Path("/proc/diarizen_lab_out").exists()
    assert not (runs / "runs" / "exp").exists()  # the experiment folder of tiny.toml
    assert not (runs.parent / "escaped").exists()


def test_a_file_name_with_a_space_is_named_with_its_fix(runs, tmp_path, capsys):
    """Kaldi's rule: a recording name holds no whitespace (RTTM and wav.scp fields are whitespace-separated);
    a wav.scp can still list such a file under a plain name."""
    audio = tmp_path / "two words.wav"
    shutil.copy(runs / "audio" / "clipped.wav", audio)
    out = tmp_path / "out"
    argv = [*expand(DIARIZE, runs, out), str(audio)]
    message = one_line_error(argv, capsys)
    assert message == (
        f"{ERROR_PREFIX}{audio}: recording name 'two words' (the file name) contains whitespace, which an RTTM "
        "line cannot hold (rename the file, or list it in a wav.scp line '<name> <path with spaces>')"
    )
    assert not out.exists()
    scp = tmp_path / "wav.scp"
    scp.write_text(f"two_words {audio}\n")
    assert main([*expand(DIARIZE, runs, out), str(scp)]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["two_words.rttm"]


# ---------------------------------------------------------------------------------------------------------
# A trained run to resume, lock and fill the disk of


def train_argv(runs: Path, exp_dir: Path, *extra: str) -> list[str]:
    return ["train", "-C", str(runs / "runs" / "tiny.toml"), "--set", f'meta.exp_dir="{exp_dir}"', *extra]


@pytest.fixture(scope="module")
def trained(runs, tmp_path_factory):
    """exp/bad_run_case after one epoch (resume tests copy it)."""
    exp_dir = tmp_path_factory.mktemp("trained") / "exp"
    assert main(train_argv(runs, exp_dir)) == 0
    return exp_dir


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    exp_dir = tmp_path / "exp"
    shutil.copytree(trained, exp_dir, symlinks=True)
    return exp_dir


def test_resume_with_a_changed_config_is_refused_with_the_changes(runs, run_copy, capsys):
    run_dir = run_copy / "bad_run_case"
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    changed = ["--set", "optimizer.args.lr=0.001", "--set", "dataloader.batch_size=2", "--resume"]
    message = one_line_error(train_argv(runs, run_copy, *changed), capsys)
    assert message == (
        f"{ERROR_PREFIX}{runs}/runs/tiny.toml: resuming with a config that changes the run: "
        "dataloader.batch_size: 4 -> 2; optimizer.args.lr: 0.003 -> 0.001 (undo the change to continue "
        "bad_run_case, pass --resume-with-changes to apply it from epoch 1 on (recorded in config.history.toml), "
        "or start a new run)"
    )
    assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()} == before
    # what does not change the run is accepted as it is
    assert main(train_argv(runs, run_copy, "--set", "checkpoint.keep_last_n=3", "--resume")) == 0
    assert 'keep_last_n = 3' in (run_dir / "config.toml").read_text()


def test_resume_with_changes_applies_and_records_them(runs, run_copy, capsys):
    run_dir = run_copy / "bad_run_case"
    changed = ["--set", "optimizer.args.lr=0.001", "--set", "trainer.max_epochs=2", "--resume-with-changes"]
    assert main(train_argv(runs, run_copy, *changed)) == 0
    assert "resuming with 2 changed key(s) from epoch 1" in capsys.readouterr().out
    history = tomllib.loads((run_dir / "config.history.toml").read_text())
    (entry,) = history["resume"]
    assert (entry["epoch"], entry["step"]) == (1, 12)
    assert entry["checkpoint"] == str(run_dir / "checkpoints" / "epoch_0001")
    assert entry["changes"] == {"optimizer.args.lr": {"old": 0.003, "new": 0.001},
                                "trainer.max_epochs": {"old": 1, "new": 2}}
    saved = tomllib.loads((run_dir / "config.toml").read_text())
    assert saved["optimizer"]["args"]["lr"] == 0.001 and saved["trainer"]["max_epochs"] == 2
    # the new rate and the new length of the cosine schedule are the ones used: at the last update of
    # epoch 2 (step 24 of 24, 2 warm-up steps) the rate is 0.001 * cos-decay(23 / 22) = 0
    state = torch.load(run_dir / "checkpoints" / "epoch_0002" / "training_state.pt", weights_only=True)
    (group,) = state["optimizers"]["main"]["param_groups"]
    assert group["initial_lr"] == 0.001 and state["schedulers"]["main"]["lr_lambdas"][0]["total_steps"] == 24
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == [1, 2]


def test_a_resume_whose_checkpoint_does_not_fit_rewrites_nothing(runs, run_copy, capsys):
    run_dir = run_copy / "bad_run_case"
    before = (run_dir / "config.toml").read_bytes()
    wider = ["--set", "model.args.attention_in=32", "--resume-with-changes"]
    message = one_line_error(train_argv(runs, run_copy, *wider), capsys)
    assert message.startswith(f"{ERROR_PREFIX}{run_dir}/checkpoints/epoch_0001/model.pt: the checkpoint's weights "
                              "do not fit the configured [model] (size mismatch for projection.weight")
    assert (run_dir / "config.toml").read_bytes() == before and not (run_dir / "config.history.toml").exists()


def test_a_training_state_holding_nothing_is_one_line(runs, run_copy, capsys):
    state = run_copy / "bad_run_case" / "checkpoints" / "epoch_0001" / "training_state.pt"
    torch.save({}, state)
    message = one_line_error(train_argv(runs, run_copy, "--resume"), capsys)
    assert message == (
        f"{ERROR_PREFIX}{state}: not a complete training state (missing: trainer, optimizers, schedulers, "
        "clipper, objective, data, rng) (it was not written by diarizen_lab training, or is damaged: resume from "
        "another checkpoint)"
    )


def test_resume_compares_the_task_and_the_objective(runs, run_copy, capsys):
    message = one_line_error(train_argv(runs, run_copy, "--set", "task.max_speakers_per_chunk=3", "--resume"), capsys)
    assert ": resuming with a config that changes the run: task.max_speakers_per_chunk: 4 -> 3 (" in message
    saved = {"objective": {"path": DISTILL, "args": {"target_sparsity": 0.4}}, "task": {"chunk_size": 1.0}}
    current = {"objective": {"path": DISTILL, "args": {"target_sparsity": 0.6}}, "task": {"chunk_size": 1.0}}
    assert [str(change) for change in run_changing(config_changes(saved, current), current)] == [
        "objective.args.target_sparsity: 0.4 -> 0.6"]


def test_speakers_per_chunk_in_a_dataset_block_is_the_one_line_belongs_to_task_error(runs, tmp_path, capsys):
    """The dataset and the model read their speakers from one [task]: an old config that set them per dataset
    (where 8 against the model's 4 trained to DER 1.0 without a word) is refused at the key."""
    config = tmp_path / "old.toml"
    text = (runs / "runs" / "tiny.toml").read_text()
    config.write_text(text.replace("chunk_shift = 1.0\n", "chunk_shift = 1.0\nmax_speakers_per_chunk = 8\n", 1))
    line = config.read_text().splitlines().index("max_speakers_per_chunk = 8") + 1
    argv = ["train", "-C", str(config), "--set", f'meta.exp_dir="{tmp_path / "exp"}"']
    assert one_line_error(argv, capsys) == (
        f"{ERROR_PREFIX}{config}:{line}: [train_dataset.args] 'max_speakers_per_chunk' belongs to [task] now "
        "(move max_speakers_per_chunk to [task] (stated once, for the model and every dataset))"
    )
    assert not (tmp_path / "exp").exists()


# ---------------------------------------------------------------------------------------------------------
# The pruning path (a training config with a distill-prune [objective]) is checked as any training


def test_a_pruning_config_gets_the_monitor_check_at_load_and_the_lock(tmp_path, capsys):
    exp_dir = tmp_path / "exp"
    argv = ["train", "-C", str(PRUNE_CONFIG), "--set", f'meta.exp_dir="{exp_dir}"']
    message = one_line_error([*argv, "--set", "checkpoint.monitor=val/der"], capsys)
    assert message == (
        f"{ERROR_PREFIX}{PRUNE_CONFIG}:81: [checkpoint] monitor 'val/der' is not a metric of this run "
        "(choose one of val/cos, val/l1, val/l2, val/loss)"
    )
    holder = RunLock(exp_dir / "distill").acquire()
    try:
        assert "is in use by another run" in one_line_error(argv, capsys)
        assert sorted(path.name for path in holder.run_dir.iterdir()) == [LOCK_FILE]
    finally:
        holder.release()


def test_the_declared_metric_names_are_the_logged_ones():
    from diarizen_lab.data.task import Task
    from diarizen_lab.pruning.distill import HiddenStateDistillation
    from diarizen_lab.training.metrics import DER_COUNTS
    from diarizen_lab.training.objective import PowersetObjective

    counts = {"loss_sum": 2.0, "frames": 4.0, **dict.fromkeys(DER_COUNTS, 1.0)}
    logged = PowersetObjective(task=Task()).validation_metrics(counts)
    assert sorted(logged) == sorted(PowersetObjective.metric_names) == ["confusion", "der", "fa", "loss", "miss"]
    _, parts = HiddenStateDistillation()([torch.ones(1, 2, 3)], [torch.zeros(1, 2, 3)])
    assert ("loss", *parts) == DistillPruneObjective.metric_names == ("loss", "l1", "l2", "cos")


# ---------------------------------------------------------------------------------------------------------
# One run per experiment directory


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_a_second_run_into_a_held_directory_exits_2_naming_the_holder(runs, tmp_path, capsys):
    exp_dir = tmp_path / "exp"
    argv = train_argv(runs, exp_dir, "--set", "trainer.max_epochs=1000")
    holder = subprocess.Popen([sys.executable, "-m", "diarizen_lab", *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        lock = exp_dir / "bad_run_case" / LOCK_FILE
        wait_for(lock, holder)
        message = one_line_error(train_argv(runs, exp_dir, "--resume"), capsys)
        assert message.startswith(f"{ERROR_PREFIX}{exp_dir}/bad_run_case is in use by another run (pid {holder.pid} "
                                  f"on host {os.uname().nodename}, since ")
        assert message.endswith(f"; lock {lock}): wait for it to finish or stop it, or train into another [meta] name")
        assert holder.poll() is None  # the holder runs on
    finally:
        holder.kill()
        holder.communicate()


def test_the_lock_of_a_killed_run_is_taken_over(runs, tmp_path, capsys):
    exp_dir = tmp_path / "exp"
    run_dir = exp_dir / "bad_run_case"
    killed = subprocess.Popen(
        [sys.executable, "-c", "import os, signal, sys; from diarizen_lab.training.run_lock import RunLock; "
         "RunLock(sys.argv[1]).acquire(); os.kill(os.getpid(), signal.SIGKILL)", str(run_dir)],
    )
    assert killed.wait(timeout=120) == -signal.SIGKILL
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == killed.pid  # left behind, no longer held
    dead_pid = killed.pid
    assert main(train_argv(runs, exp_dir)) == 0
    err = capsys.readouterr().err
    assert f"took over the lock of a run that is no longer running (pid {dead_pid} on host" in err
    assert not (run_dir / LOCK_FILE).exists() and (run_dir / "checkpoints" / "epoch_0001").is_dir()


def test_a_refused_lock_leaves_the_holder_alone(tmp_path):
    holder = RunLock(tmp_path / "exp" / "run").acquire()
    try:
        with pytest.raises(Exception, match=f"pid {os.getpid()} on host"):
            RunLock(tmp_path / "exp" / "run").acquire()
        assert json.loads(holder.path.read_text())["pid"] == os.getpid()
    finally:
        holder.release()
    assert not (tmp_path / "exp").exists()  # created by the lock, empty: removed with it


def test_a_ddp_launch_into_a_held_directory_stops_on_every_process(runs, tmp_path):
    from test_training_ddp import launch

    exp_dir = tmp_path / "exp"
    holder = RunLock(exp_dir / "bad_run_case").acquire()
    try:
        result = launch(*train_argv(runs, exp_dir)[1:], cwd=tmp_path)
        assert result.returncode != 0
        refusals = [line for line in result.stderr.splitlines() if "is in use by another run" in line]
        assert len(refusals) == 2 and all(f"(pid {os.getpid()} on host" in line for line in refusals), result.stderr
        assert sorted(path.name for path in holder.run_dir.iterdir()) == [LOCK_FILE]
    finally:
        holder.release()


# ---------------------------------------------------------------------------------------------------------
# A full disk during a checkpoint save


def test_a_full_disk_during_a_save_is_one_line_and_leaves_no_partial_checkpoint(runs, tmp_path):
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("needs a private mount namespace (unshare) to mount a small tmpfs")
    exp_dir = tmp_path / "full"
    exp_dir.mkdir()
    command = shlex.join([sys.executable, "-m", "diarizen_lab", *train_argv(runs, exp_dir)])
    result = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c",
         f"mount -t tmpfs -o size=100k tmpfs {exp_dir} && {command}; code=$?; "
         f"echo left:; ls -A {exp_dir}/bad_run_case/checkpoints; exit $code"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("diarizen-lab:")]
    assert line.startswith(f"{ERROR_PREFIX}{exp_dir}/bad_run_case/checkpoints/epoch_0001: cannot write it, "
                           "no space left on device")
    assert result.stdout.split("left:")[1].split() == []  # no epoch_0001, no temporary directory


# ---------------------------------------------------------------------------------------------------------
# Non-finite metrics are never "best"


def test_a_nonfinite_validation_metric_never_makes_an_epoch_best(tmp_path):
    from diarizen_lab.training.objective import PowersetObjective

    class NaNDer(PowersetObjective):
        def validation_metrics(self, counts):
            return {**super().validation_metrics(counts), "der": math.nan}

    trainer = make_trainer(tmp_path, max_epochs=2, objective_class=NaNDer)
    state = trainer.fit()
    assert state.best_epoch is None and state.best_value is None
    assert not (tmp_path / "checkpoints" / "best").exists()
    assert trainer.best_epochs() == []
    assert [is_selectable(v) for v in (0.5, math.nan, math.inf, -math.inf, None, True, "0.1")] == [
        True, False, False, False, False, False, False]


def test_a_nonfinite_validation_is_never_selected_for_retention_or_averaging(tmp_path):
    rows = [{"epoch": 1, "val/der": 0.5}, {"epoch": 2, "val/der": math.nan}, {"epoch": 3, "val/der": math.inf},
            {"epoch": 4, "val/der": 0.4}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    ranked = rank_epochs(read_metric(tmp_path, "val/der"), "min")
    assert [(score.epoch, score.value) for score in ranked] == [(4, 0.4), (1, 0.5)]
