"""Every config shipped in conf/ loads and validates (a typo in a shipped config fails here, not on a GPU node)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from diarizen_lab.config import load_config
from diarizen_lab.data.synth import write_noise_and_rirs
from diarizen_lab.data.task import Task
from diarizen_lab.evaluation.pipeline import DiarizationConfig
from diarizen_lab.training.recipe import load_training_config

CONF = Path(__file__).resolve().parents[1] / "conf"
TRAINING = ["tiny_wavlm_conformer", "tiny_fbank_conformer", "wavlm_updated_conformer", "wavlm_frozen_conformer",
            "wavlm_large_updated_conformer", "fbank_conformer"]
PRUNING = ["prune_tiny", "prune_s80_base", "prune_s80_large"]
#: the DiariZen configs: upstream's model and upstream's recipe values
DIARIZEN = ["wavlm_updated_conformer", "wavlm_frozen_conformer", "wavlm_large_updated_conformer",
            "prune_s80_base_finetune", "prune_s80_large_finetune"]


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


def test_the_augmented_config_is_the_tiny_one_plus_augmentation(tmp_path):
    write_noise_and_rirs(tmp_path)
    folders = [f'train_dataset.args.augmentation.{key}="{tmp_path / name}"' for key, name in
               (("noise_dir", "noise"), ("rir_dir", "rirs"))]
    config = load_training_config(CONF / "tiny_wavlm_conformer_augmented.toml", folders)
    assert config["meta"].name == "tiny_wavlm_conformer_augmented"
    assert len(config["train_dataset"].args["augmentation"].noises) == 6
    augmented = tomllib.loads((CONF / "tiny_wavlm_conformer_augmented.toml").read_text())
    tiny = tomllib.loads((CONF / "tiny_wavlm_conformer.toml").read_text())
    assert set(augmented["train_dataset"]["args"].pop("augmentation")) >= {"noise_dir", "rir_dir", "gain_db"}
    augmented["meta"]["name"] = tiny["meta"]["name"]
    assert augmented == tiny  # a copy kept in step: only the name and the augmentation differ


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


@pytest.mark.parametrize("name", DIARIZEN)
def test_diarizen_configs_use_upstream_s_model_and_selection(name):
    config = load_training_config(CONF / f"{name}.toml")
    model = config["model"].args
    assert (model["layer_weighting"], model["conformer_conv_norm"]) == ("linear", "batch")
    checkpoint = config["checkpoint"]
    # upstream: save_max_score = false, max_num_checkpoints = 100; its scripts average 5 epochs by the loss
    assert (checkpoint.monitor, checkpoint.mode, checkpoint.keep_last_n, checkpoint.keep_best_n) == (
        "val/loss", "min", 100, 5)
    assert config["trainer"].patience == (5 if "prune" in name else 10)
    assert config["trainer"].max_epochs == (20 if "prune" in name else 100)
    assert (config["clipping"].mode, config["clipping"].percentile, config["clipping"].history) == ("adaptive", 90.0, 1000)
    assert config["dataloader"].batch_size == (32 if "frozen" in name else 16)


@pytest.mark.parametrize(("name", "layers", "batch_size"), [("prune_s80_base", [0, 4, 8, 12], 16),
                                                            ("prune_s80_large", [0, 8, 16, 24], 8)])
def test_pruning_configs_carry_upstream_s_recipe_values(name, layers, batch_size):
    config = load_training_config(CONF / f"{name}.toml")
    student, objective = config["model"].args, config["objective"].args
    assert student["units"] == ["conv", "head", "interm"] and student["distill_layers"] == layers
    assert objective["teacher_layers"] == layers and objective["cosine_type"] == "distance"
    assert (objective["target_sparsity"], objective["gate_lr"], objective["l1_weight"], objective["l2_weight"],
            objective["cos_weight"]) == (0.8, 0.02, 1.0, 0.0, 1.0)
    assert (config["meta"].seed, config["dataloader"].batch_size, config["optimizer"].args["lr"]) == (3407, batch_size, 2e-4)
    assert (config["trainer"].max_epochs, config["trainer"].patience) == (30, 5)
    assert config["train_dataset"].args["chunk_shift"] == 6.0 and config["clipping"].mode == "adaptive"
