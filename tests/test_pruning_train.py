"""Distill-and-prune through the shared trainer: the tiny config reaches its target sparsity on CPU, logs what
it promises, and its checkpoints average and prune into the WavLM it announced."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from diarizen_lab.cli import main
from diarizen_lab.data.task import Task
from diarizen_lab.models.wavlm import WavLM, get_preset, load_wavlm
from diarizen_lab.store.wavlm_formats import save_wavlm
from diarizen_lab.training.recipe import load_training_config, train

CONFIG = Path(__file__).resolve().parents[1] / "conf" / "prune_tiny.toml"
RATE = 16000
TARGET = 0.2


def write_data_dir(path: Path, seconds: list[float], seed: int) -> Path:
    """Recordings of harmonic tones with random pitch and loudness contours plus noise (no labels needed)."""
    rng = np.random.default_rng(seed)
    (path / "wav").mkdir(parents=True)
    scp, rttm = [], []
    for index, duration in enumerate(seconds):
        samples = int(duration * RATE)
        t = np.arange(samples) / RATE
        pitch = 120 + 80 * np.repeat(rng.random(int(duration * 4) + 1), RATE // 4)[:samples]
        phase = 2 * np.pi * np.cumsum(pitch) / RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
        envelope = np.repeat(rng.random(int(duration * 8) + 1) > 0.3, RATE // 8)[:samples]
        audio = 0.3 * voiced * envelope + 0.02 * rng.standard_normal(samples) + 0.05 * np.sin(2 * np.pi * 50 * t)
        name = f"rec{index}"
        sf.write(path / "wav" / f"{name}.wav", audio.astype(np.float32), RATE)
        scp.append(f"{name} {path / 'wav' / f'{name}.wav'}\n")
        rttm.append(f"SPEAKER {name} 1 0.000 {duration / 2:.3f} <NA> <NA> spk0 <NA> <NA>\n")
    (path / "wav.scp").write_text("".join(scp))
    (path / "rttm").write_text("".join(rttm))
    return path


def run_tiny(root: Path) -> Path:
    """Distill-and-prune with conf/prune_tiny.toml on a tiny corpus and a random teacher; return the teacher.

    200 updates, the target warmed up over the first 100. A random teacher gives weak distillation gradients,
    which leave the gates unsaturated for long; the run gates conv channels and FFN units, whose fine grain
    (0.1% of the parameters per unit) lets the deterministic architecture match the target in so short a run.
    """
    train_dir = write_data_dir(root / "train", [40.0, 40.0], seed=0)
    dev = write_data_dir(root / "dev", [8.0], seed=1)
    torch.manual_seed(0)
    teacher = root / "teacher.pt"
    save_wavlm(teacher, WavLM(get_preset("wavlm_tiny")))
    config = load_training_config(CONFIG, [
        f'meta.exp_dir="{root}"',
        'meta.name="distill"',
        f'objective.args.teacher="{teacher}"',  # also the student's start
        f'train_dataset.args.data_dir="{train_dir}"',
        f'validation_dataset.args.data_dir="{dev}"',
        'model.args.units=["conv", "interm"]',
        f"objective.args.target_sparsity={TARGET}",
        "objective.args.warmup_steps=100",
        "train_dataset.args.chunk_shift=1.0",
        "trainer.max_epochs=10",
    ])
    train(config)
    return teacher


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune")
    return root, run_tiny(root)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_reaches_the_target_sparsity(trained):
    root, _ = trained
    history = rows(root / "distill")
    assert [row["epoch"] for row in history] == list(range(1, 11))
    last = history[-1]
    assert last["step"] == 10 * 20  # 80 chunks of 1 s, 4 per batch
    assert last["prune/target_sparsity"] == TARGET
    assert last["prune/sparsity"] == pytest.approx(TARGET, abs=0.01)
    assert last["prune/expected_sparsity"] == pytest.approx(TARGET, abs=0.01)
    # the sparsity was warmed up, not imposed at once
    assert history[0]["prune/target_sparsity"] == pytest.approx(TARGET * 20 / 100)  # warmup_steps = 100
    assert history[0]["prune/sparsity"] < history[-1]["prune/sparsity"]
    for key in ("train/distill", "train/reg", "train/expected_sparsity", "train/target_sparsity",
                "train/lambda1", "train/lambda2", "val/loss", "prune/lambda1", "prune/lambda2",
                "lr/main", "lr/gates", "lr/lambdas", "prune/params", "prune/gmacs_per_second"):
        assert key in last, key
    assert any((root / "distill" / "tb").rglob("events.out.tfevents.*"))


def test_checkpoints_average_after_the_peak_and_prune_to_the_logged_size(trained, capsys):
    root, teacher = trained
    run_dir = root / "distill"
    assert main(["prune", "average", "-e", str(run_dir), "-n", "2", "-o", str(root / "avg.pt")]) == 0
    averaged = torch.load(root / "avg.pt", weights_only=True)
    history = rows(run_dir)
    peak = max(history, key=lambda row: (row["val/loss"], row["epoch"]))["epoch"]
    assert all(epoch > peak for epoch in averaged["meta"]["averaging"]["epochs"])
    assert any(key.startswith("gates.") for key in averaged["state_dict"])

    assert main(["prune", "apply", "-c", str(root / "avg.pt"), "-o", str(root / "pruned.pt")]) == 0
    report = json.loads((root / "pruned.json").read_text())
    pruned = load_wavlm(root / "pruned.pt")
    teacher_params = sum(p.numel() for p in load_wavlm(teacher).parameters())
    assert report["after"]["params"]["total"] == sum(p.numel() for p in pruned.parameters())
    assert report["sparsity"] == pytest.approx(1 - report["after"]["params"]["total"] / teacher_params)
    assert report["sparsity"] == pytest.approx(TARGET, abs=0.01)
    assert report["max_hidden_state_difference"] < 1e-4
    assert "sparsity" in capsys.readouterr().out


def test_training_state_holds_the_multipliers_and_step_but_not_the_teacher(tmp_path):
    from diarizen_lab.pruning import DistillPruneObjective

    save_wavlm(tmp_path / "teacher.pt", WavLM(get_preset("wavlm_tiny")))
    objective = DistillPruneObjective(tmp_path / "teacher.pt", [0, 1, 2], target_sparsity=0.5, warmup_steps=10,
                                      task=Task())
    with torch.no_grad():
        objective.lagrangian.lambda1.fill_(-2.0)
    objective.on_update(7)
    state = objective.state_dict()
    assert sorted(state) == ["lagrangian.lambda1", "lagrangian.lambda2", "step"]
    restored = DistillPruneObjective(tmp_path / "teacher.pt", [0, 1, 2], target_sparsity=0.5, warmup_steps=10,
                                     task=Task())
    restored.load_state_dict(state, strict=True)
    assert restored.lagrangian.lambda1.item() == -2.0 and int(restored.step) == 7
    assert restored.lagrangian.target(int(restored.step)) == pytest.approx(0.35)
    restored.train()
    assert not restored.teacher.training


def test_the_student_starts_as_the_teacher_unless_it_names_a_wavlm(tmp_path):
    from diarizen_lab.pruning import DistillPruneObjective, PruningStudent

    torch.manual_seed(0)
    save_wavlm(tmp_path / "teacher.pt", WavLM(get_preset("wavlm_tiny")))
    objective = DistillPruneObjective(tmp_path / "teacher.pt", [0, 1, 2], task=Task())
    supplied = objective.model_arguments({"units": []})
    assert supplied == {"wavlm_checkpoint": tmp_path / "teacher.pt"}
    student = PruningStudent(units=[], distill_layers=[0, 1, 2], **supplied)
    assert all(torch.equal(a, b) for a, b in zip(student.wavlm.state_dict().values(),
                                                  objective.teacher.state_dict().values()))
    assert objective.model_arguments({"wavlm": "random:wavlm_tiny"}) == {}
    assert objective.model_arguments({"wavlm_checkpoint": tmp_path / "other.pt"}) == {}


def test_prune_train_points_to_train(capsys):
    assert main(["prune", "train", "-C", "conf/prune_tiny.toml"]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert "`prune train` is now `diarizen-lab train`" in error and "diarizen-lab train -C conf/prune_tiny.toml" in error
