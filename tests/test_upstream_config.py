"""Upstream DiariZen's nine recipe TOMLs (../shared/upstream-fixtures/configs) through `config import-upstream`,
validated and trained; fine-tuning from a released folder (`train --set finetune.init_from=<folder>`)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch
from test_training_loop import corpus  # noqa: F401  (fixture re-used)
from test_upstream_models import HUB_REPO, hub_store  # noqa: F401  (fixture re-used)

from diarizen_lab.cli import main
from diarizen_lab.errors import InputError
from diarizen_lab.models import load_model
from diarizen_lab.models.wavlm import WavLM, get_preset
from diarizen_lab.models.wavlm.formats import save_wavlm
from diarizen_lab.training.recipe import load_training_config
from diarizen_lab.store.store import ENV_VARIABLE
from diarizen_lab.upstream_config import UnsupportedKeysError, convert_upstream_text

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "upstream-fixtures"
RECIPES = FIXTURES / "configs" / "recipes"
NAMES = {
    "diar_ssl/conf/fbank_conformer.toml": [],
    "diar_ssl/conf/pyannote_baseline.toml": [],
    "diar_ssl/conf/wavlm_frozen_conformer.toml": [],
    "diar_ssl/conf/wavlm_updated_conformer.toml": [],
    "diar_ssl_mc/conf/channel_att_hidden_256_ft_base_8sec.toml": [
        "model.path = 'diarizen.models.eend.model_wavlm_conformer_mc.Model' (multi-channel fusion is not "
        "implemented: converted to the single-channel WavLM-Conformer)",
        *[f"model.args.channel_fusion_{key} = {value} (multi-channel fusion is not implemented)"
          for key, value in (("dim", 256), ("layers", 4), ("heads", 8))],
        *[f"{table}.args.{key} = {value!r} (multi-channel chunks are not implemented)"
          for table in ("train_dataset", "validate_dataset") for key, value in (("channel_mode", "multichannel"),
                                                                                ("num_channels", 8))],
    ],
    "diar_ssl_pruning/conf/dual_opt_common.toml": [],
    "diar_ssl_pruning/conf/dual_opt_common_large.toml": [],
    **{f"diar_ssl_pruning/conf/{name}.toml": [
        "trainer.args.sparsity_warmup_epochs = 5 (our sparsity warm-up counts updates: set [objective.args] "
        "warmup_steps = epochs x updates per epoch)"] for name in ("s80_base", "s80_large")},
}

pytestmark = pytest.mark.skipif(not RECIPES.is_dir(), reason=f"needs upstream DiariZen's recipe TOMLs in {RECIPES}")


def convert(name: str, allow_unsupported: bool = True) -> dict:
    return tomllib.loads(convert_upstream_text((RECIPES / name).read_text(), name, allow_unsupported=allow_unsupported))


def validate(config: dict, directory: Path) -> dict:
    path = directory / "converted.toml"
    path.write_text(tomli_w.dumps(config))
    return load_training_config(path)


def test_the_nine_fixtures_are_upstream_s_nine_recipes():
    assert sorted(str(path.relative_to(RECIPES)) for path in RECIPES.rglob("*.toml")) == sorted(NAMES)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_each_upstream_recipe_converts_and_validates(tmp_path, name):
    text = convert_upstream_text((RECIPES / name).read_text(), name, allow_unsupported=True)
    not_carried = [line.removeprefix("# NOT CARRIED OVER: ") for line in text.splitlines()
                   if line.startswith("# NOT CARRIED OVER: ")]
    assert not_carried == NAMES[name]
    config = validate(tomllib.loads(text), tmp_path)
    upstream = tomllib.loads((RECIPES / name).read_text())
    trainer = upstream["trainer"]["args"]
    assert config["meta"].seed == upstream["meta"]["seed"] and config["trainer"].max_epochs == trainer["max_epochs"]
    assert config["trainer"].patience == trainer["max_patience"]
    assert (config["clipping"].mode, config["clipping"].percentile) == ("adaptive", 90.0)
    assert config["checkpoint"].monitor == "val/loss" and config["checkpoint"].mode == "min"
    assert config["dataloader"].batch_size == upstream["train_dataset"]["dataloader"]["batch_size"]
    assert config["train_dataset"].args["chunk_shift"] == upstream["train_dataset"]["args"]["chunk_shift"]
    scp_folder = Path(upstream["train_dataset"]["args"]["scp_file"]).parent
    assert str(config["train_dataset"].args["data_dir"]).endswith(str(scp_folder))


def test_a_key_without_a_rule_is_reported_not_dropped():
    text = (RECIPES / "diar_ssl/conf/wavlm_updated_conformer.toml").read_text()
    text = text.replace("[trainer.args]\n", "[trainer.args]\nwarmup_ratio = 0.1\n")
    text += "\n[augmentation]\nnoise_dir = \"/data/musan\"\n"
    with pytest.raises(UnsupportedKeysError) as error:
        convert_upstream_text(text, "x.toml")
    assert error.value.unsupported == [
        "trainer.args.warmup_ratio = 0.1 (no equivalent)", "augmentation.noise_dir = '/data/musan' (no equivalent)"
    ]


def test_recipe_specific_conversions():
    dual = convert("diar_ssl/conf/wavlm_updated_conformer.toml")
    assert dual["optimizer_small"] == {"path": "torch.optim.AdamW", "args": {"lr": 2e-5}}
    assert dual["optimizer_big"]["args"] == {"lr": 1e-3}
    assert dual["model"]["args"]["wavlm_checkpoint"] == "/YOUR_PATH/WavLM-Base+.pt"
    assert dual["model"]["args"]["freeze_wavlm"] is False and dual["task"]["chunk_size"] == 8.0
    assert convert("diar_ssl/conf/wavlm_frozen_conformer.toml")["model"]["args"]["freeze_wavlm"] is True
    single = convert("diar_ssl/conf/fbank_conformer.toml")
    assert single["optimizer"]["args"] == {"lr": 1e-3} and "optimizer_small" not in single
    assert {key: single["model"]["args"][key] for key in ("num_mel_bins", "window_ms", "hop_ms", "frame_stacking")} == {
        "num_mel_bins": 80, "window_ms": 25, "hop_ms": 10, "frame_stacking": 1}
    prune = convert("diar_ssl_pruning/conf/s80_large.toml")
    assert prune["model"]["args"] == {"wavlm_checkpoint": "/YOUR_PATH/wavlm-large-finetuned.bin",
                                      "units": ["conv", "head", "interm"], "distill_layers": [0, 8, 16, 24]}
    assert prune["objective"] == {"path": "diarizen_lab.pruning.DistillPruneObjective", "args": {
        "teacher": "/YOUR_PATH/wavlm-large-finetuned.bin", "teacher_layers": [0, 8, 16, 24], "target_sparsity": 0.8,
        "gate_lr": 0.02, "l1_weight": 1, "l2_weight": 0, "cos_weight": 1, "cosine_type": "distance"}}
    assert prune["optimizer"]["args"] == {"lr": 2e-4}
    finetune = convert("diar_ssl_mc/conf/channel_att_hidden_256_ft_base_8sec.toml")
    assert finetune["finetune"] == {"init_from": "/YOUR_PATH/huggingface_hub/diarizen-wavlm-base-s80-md"}
    wavlm = finetune["model"]["args"]["wavlm"]  # the preset's architecture
    assert len(wavlm["num_heads"]) == 12 and wavlm["embed_dim"] == 768 and 0 < sum(wavlm["num_heads"]) < 144
    assert wavlm["extractor_output_scale"]  # the released s80 weights carry the last convolution's soft mask
    assert "finetune" not in dual  # finetune = false
    text = (RECIPES / "diar_ssl_mc/conf/channel_att_hidden_256_ft_base_8sec.toml").read_text()
    converted = convert_upstream_text(text.replace("finetune = true", "finetune = false"), "x.toml",
                                      allow_unsupported=True)
    assert "\n[finetune]" not in converted and "# IMPLICIT HERE: finetune.ckpt_dir = '/YOUR_PATH/huggingface_hub/" \
        "diarizen-wavlm-base-s80-md/pytorch_model.bin' (unused: finetune = false)" in converted


def test_cli_refuses_unsupported_settings_unless_allowed(tmp_path, capsys):
    source = RECIPES / "diar_ssl_pruning/conf/s80_base.toml"
    target = tmp_path / "ours.toml"
    assert main(["config", "import-upstream", str(source), "-o", str(target)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "trainer.args.sparsity_warmup_epochs = 5" in error[0] and not target.exists()
    assert main(["config", "import-upstream", str(source), "-o", str(target), "--allow-unsupported"]) == 0
    assert "1 upstream setting(s) not carried over" in capsys.readouterr().out
    assert target.read_text().splitlines()[1].startswith("# NOT CARRIED OVER: trainer.args.sparsity_warmup_epochs")
    assert main(["config", "import-upstream", str(source), "-o", str(target), "--allow-unsupported"]) == 2  # exists


@pytest.mark.parametrize("name", ["diar_ssl/conf/wavlm_updated_conformer.toml", "diar_ssl/conf/pyannote_baseline.toml"])
def test_a_converted_training_config_trains_one_epoch(tmp_path, corpus, name):  # noqa: F811
    from diarizen_lab.training.recipe import train

    converted = convert(name, allow_unsupported=False)
    # the tiny corpus (and a tiny WavLM-Conformer); every other setting is the converted one
    converted["meta"]["exp_dir"] = str(tmp_path / "exp")
    converted["task"]["chunk_size"] = 2.0
    if "wavlm_checkpoint" in converted["model"]["args"]:
        wavlm = tmp_path / "wavlm.pt"
        save_wavlm(wavlm, WavLM(get_preset("wavlm_tiny")))
        converted["model"]["args"].update(wavlm_checkpoint=str(wavlm), attention_in=16, ffn_hidden=32, num_layers=1)
    for section, split in (("train_dataset", "train"), ("validation_dataset", "dev")):
        converted[section]["args"].update(data_dir=str(corpus / split), chunk_shift=2.0)
    converted["dataloader"].update(batch_size=4, num_workers=0)
    converted["trainer"]["max_epochs"] = 1
    state = train(validate(converted, tmp_path))
    assert state.epoch == 1
    run = tmp_path / "exp" / Path(name).stem
    assert (run / "checkpoints" / "epoch_0001" / "model.pt").is_file()
    assert load_model(run).architecture()["path"] == converted["model"]["path"]


@pytest.mark.parametrize("kind", ["folder", "hub asset"])
def test_finetune_from_a_released_model_for_one_epoch(tmp_path, corpus, monkeypatch, hub_store, kind):  # noqa: F811
    # init_from names a released folder, or a hub tree of the store by its repository name
    released = str(FIXTURES / "base_tiny") if kind == "folder" else HUB_REPO
    monkeypatch.setenv(ENV_VARIABLE, str(hub_store))
    architecture = load_model(released).architecture()
    args = {key: value for key, value in architecture["args"].items() if value is not None}
    config = {
        "meta": {"name": "finetune", "exp_dir": str(tmp_path / "exp"), "seed": 0},
        "task": architecture["task"],
        "model": {"path": architecture["path"], "args": args},
        **{name: {"path": "diarizen_lab.data.dataset.ChunkDataset",
                  "args": {"data_dir": str(corpus / split), "chunk_shift": 8.0}}
           for name, split in (("train_dataset", "train"), ("validation_dataset", "dev"))},
        "dataloader": {"batch_size": 2},
        "optimizer_small": {"path": "torch.optim.AdamW", "args": {"lr": 0.0}},  # no update: the weights stay
        "optimizer_big": {"path": "torch.optim.AdamW", "args": {"lr": 0.0}},
        "clipping": {"mode": "adaptive"},
        "trainer": {"max_epochs": 1},
        "checkpoint": {"monitor": "val/loss"},
    }
    path = tmp_path / "finetune.toml"
    path.write_text(tomli_w.dumps(config))
    assert main(["train", "-C", str(path), "--set", f'finetune.init_from="{released}"']) == 0
    saved = torch.load(tmp_path / "exp" / "finetune" / "checkpoints" / "epoch_0001" / "model.pt", weights_only=True)
    trained = dict(load_model(released).named_parameters())
    assert trained and all(torch.equal(saved["state_dict"][name], value) for name, value in trained.items())


def test_settings_that_hold_without_a_key_are_named_and_contradictions_refused():
    text = convert_upstream_text((RECIPES / "diar_ssl/conf/wavlm_updated_conformer.toml").read_text(), "x.toml")
    implicit = [line for line in text.splitlines() if line.startswith("# IMPLICIT HERE: ")]
    assert "# IMPLICIT HERE: trainer.args.lr_decay = False (no learning-rate decay)" in implicit
    assert "# IMPLICIT HERE: model.args.wavlm_layer_num = 13 (the number of hidden states follows from the WavLM)" \
        in implicit
    upstream = (RECIPES / "diar_ssl/conf/wavlm_updated_conformer.toml").read_text()
    with pytest.raises(InputError, match=r"^x.toml: train_dataset.args.chunk_size = 4.0 contradicts another upstream "
                       r"setting that gives task.chunk_size = 8.0"):
        convert_upstream_text(upstream.replace("chunk_size = 8\nchunk_shift = 6", "chunk_size = 4\nchunk_shift = 6"),
                              "x.toml")
