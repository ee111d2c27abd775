"""The pruning stage recipe runs from any working directory: its config's paths resolve against [meta] root."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import torch

from diarizen_lab.data.task import Task
from diarizen_lab.models.io import save_model
from diarizen_lab.models.wavlm_conformer import WavLMConformer
from diarizen_lab.training.run_dir import read_metrics
from test_pruning_train import CONFIG, write_data_dir

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "diar_ssl_pruning" / "run_stage.py"


def test_pruning_recipe_extracts_and_distils_from_another_working_directory(tmp_path):
    root, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_data_dir(root / "data" / "synth" / "train", [12.0], seed=0)
    write_data_dir(root / "data" / "synth" / "dev", [4.0], seed=1)
    torch.manual_seed(0)
    finetuned = WavLMConformer(wavlm="random:wavlm_tiny", task=Task(chunk_size=4.0), attention_in=16, ffn_hidden=32,
                               num_heads=2, num_layers=1)
    save_model(tmp_path / "finetuned.pt", finetuned)
    text = CONFIG.read_text().replace('root = ".."', f'root = "{root}"').replace("max_epochs = 6", "max_epochs = 2")
    config = tmp_path / "prune_tiny.toml"
    config.write_text(text)

    result = subprocess.run(
        [sys.executable, str(RECIPE), "-C", str(config), "--finetuned", str(tmp_path / "finetuned.pt"),
         "--stage", "2", "--stop-stage", "3"],
        cwd=elsewhere, capture_output=True, text=True, env=os.environ, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    work_dir = root / "exp" / "prune_tiny"
    assert (work_dir / "teacher.pt").is_file()  # stage 2 wrote the teacher where [objective] teacher names it
    assert [row["epoch"] for row in read_metrics(work_dir / "distill" / "metrics.jsonl")] == [1, 2]
    assert not list(elsewhere.iterdir())  # nothing written to the working directory


def test_pruning_recipe_imports_the_supervised_stages_from_any_working_directory(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("diar_ssl_pruning_run_stage", RECIPE)
    pruning = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pruning)
    supervised = pruning.supervised_recipe()
    assert supervised.__file__ == str(RECIPE.parents[1] / "diar_ssl" / "run_stage.py")
    assert list(inspect.signature(supervised.run_stages).parameters)[:3] == ["config_file", "first", "last"]
    assert supervised.DIARIZATION.is_file()
