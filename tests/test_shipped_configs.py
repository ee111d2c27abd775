"""Every config shipped in conf/ loads and validates (a typo in a shipped config fails here, not on a GPU node)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diarizen_lab.config import load_config
from diarizen_lab.data.task import Task
from diarizen_lab.evaluation.pipeline import DiarizationConfig
from diarizen_lab.training.recipe import load_training_config

CONF = Path(__file__).resolve().parents[1] / "conf"
TRAINING = ["tiny_wavlm_conformer", "tiny_fbank_conformer", "wavlm_updated_conformer", "wavlm_frozen_conformer",
            "fbank_conformer"]
PRUNING = ["prune_tiny", "prune_s80_base"]


@pytest.mark.parametrize("name", TRAINING)
def test_training_configs_validate(name):
    config = load_training_config(CONF / f"{name}.toml")
    assert config["meta"].name == name
    assert config.root == CONF.parent
    assert config["train_dataset"].args["data_dir"].is_relative_to(CONF.parent / "data")
    dual = config["optimizer_small"] is not None
    assert dual == (config["optimizer"] is None)
    assert dual == (config["model"].path.endswith("WavLMConformer") and not config["model"].args.get("freeze_wavlm"))


def test_upstream_equivalent_defaults():
    config = load_training_config(CONF / "wavlm_updated_conformer.toml")
    model, train, dev = config["model"].args, config["train_dataset"].args, config["validation_dataset"].args
    assert (config["dataloader"].batch_size, config["meta"].seed) == (16, 3407)
    assert config["task"] == Task(sample_rate=16000, chunk_size=8.0, max_speakers_per_chunk=4, max_speakers_per_frame=2)
    assert (train["chunk_shift"], dev["chunk_shift"]) == (8.0 * 0.75, 8.0)
    assert (model["num_layers"], model["attention_in"]) == (4, 256)
    assert (config["optimizer_small"].args["lr"], config["optimizer_big"].args["lr"]) == (2e-5, 1e-3)
    assert (config["clipping"].mode, config["clipping"].percentile, config["clipping"].history) == ("adaptive", 90.0, 1000)


@pytest.mark.parametrize("path", sorted((CONF / "diarization").glob("*.toml")), ids=lambda p: p.stem)
def test_diarization_configs_validate(path):
    settings = load_config(path, {"diarization": DiarizationConfig})["diarization"]
    assert settings.clustering in ("ahc", "vbx")


@pytest.mark.parametrize("name", PRUNING)
def test_pruning_configs_name_the_teacher_once_and_load_from_any_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths resolve against [meta] root, never the working directory
    config = load_training_config(CONF / f"{name}.toml")
    assert config["objective"].path == "diarizen_lab.pruning.DistillPruneObjective"
    assert config["objective"].args["teacher"] == CONF.parent / "exp" / name / "teacher.pt"
    assert "wavlm_checkpoint" not in config["model"].args  # the student starts from the teacher
    assert config["train_dataset"].args["data_dir"].is_relative_to(CONF.parent / "data")
