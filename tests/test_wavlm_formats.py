"""WavLM checkpoint formats: every format loads to the same weights; broken files give one-line errors."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from diarizen_lab.errors import InputError
from diarizen_lab.models.wavlm import STANDARD_CONV_LAYERS, TRAINING_FIELDS, WavLM, WavLMConfig, get_preset
from diarizen_lab.models.wavlm.formats import (
    FORMAT,
    convert_wavlm,
    load_wavlm,
    load_wavlm_checkpoint,
    parse_conv_feature_layers,
    save_wavlm,
)

transformers = pytest.importorskip("transformers")
torchaudio = pytest.importorskip("torchaudio")

TINY_CONV_SPEC = "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"

# diarizen_lab name -> name in Microsoft's original WavLM code (written out independently of the loader)
TO_FAIRSEQ = [
    (r"feature_extractor\.layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"feature_projection\.layer_norm\.", "layer_norm."),
    (r"feature_projection\.projection\.", "post_extract_proj."),
    (r"encoder\.pos_conv\.conv\.bias", "encoder.pos_conv.0.bias"),
    (r"encoder\.pos_conv\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
    (r"encoder\.pos_conv\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
    (r"encoder\.rel_attn_embed\.embedding\.weight", "encoder.layers.0.self_attn.relative_attention_bias.weight"),
    (r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_linear\.", r"encoder.layers.\1.self_attn.grep_linear."),
    (r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_const", r"encoder.layers.\1.self_attn.grep_a"),
    (r"encoder\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"encoder\.layers\.(\d+)\.attention_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate\.", r"encoder.layers.\1.fc1."),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output\.", r"encoder.layers.\1.fc2."),
    (r"encoder\.layers\.(\d+)\.feed_forward_norm\.", r"encoder.layers.\1.final_layer_norm."),
]


def to_fairseq(state_dict: dict, layer_norm_extractor: bool) -> dict:
    # Sequential(conv, dropout, norm, gelu), the layer norm wrapped in Sequential(transpose, norm, transpose)
    norm = r"feature_extractor.conv_layers.\1.2.1." if layer_norm_extractor else r"feature_extractor.conv_layers.\1.2."
    rules = [(r"feature_extractor\.layers\.(\d+)\.norm\.", norm), *TO_FAIRSEQ]
    renamed = {}
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            if re.match(pattern, key):
                key = re.sub(pattern, replacement, key, count=1)
                break
        renamed[key] = value
    return {**renamed, "mask_emb": torch.rand(64)}


def fairseq_cfg(large: bool) -> dict:
    return {
        "extractor_mode": "layer_norm" if large else "default",
        "encoder_layers": 2,
        "encoder_embed_dim": 64,
        "encoder_ffn_embed_dim": 128,
        "encoder_attention_heads": 4,
        "activation_fn": "gelu",
        "layer_norm_first": large,
        "conv_feature_layers": TINY_CONV_SPEC,
        "conv_bias": False,
        "relative_position_embedding": True,
        "num_buckets": 320,
        "max_distance": 800,
        "gru_rel_pos": True,
        "conv_pos": 128,
        "conv_pos_groups": 16,
        "encoder_layerdrop": 0.05,
        "feature_grad_mult": 0.1,
    }


def random_transformers_model(large: bool) -> torch.nn.Module:
    config = transformers.WavLMConfig(
        conv_dim=[32] * 7,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        feat_extract_norm="layer" if large else "group",
        do_stable_layer_norm=large,
        attn_implementation="eager",
    )
    model = transformers.WavLMModel(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model.eval()


def write_all_formats(directory: Path, large: bool) -> dict[str, Path]:
    """The same random weights in every supported format."""
    model = random_transformers_model(large)
    hf_state = model.state_dict()
    paths = {}

    paths["transformers dir (safetensors)"] = directory / "hf"
    model.save_pretrained(paths["transformers dir (safetensors)"])

    bin_dir = paths["transformers dir (bin, weight_g/weight_v)"] = directory / "hf_bin"
    bin_dir.mkdir()
    shutil.copy(directory / "hf" / "config.json", bin_dir / "config.json")
    old_names = {
        key.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                             "weight_v"): value
        for key, value in hf_state.items()
    }
    torch.save(old_names, bin_dir / "pytorch_model.bin")

    head = transformers.WavLMForAudioFrameClassification(model.config)
    head.wavlm.load_state_dict(hf_state)
    paths["transformers dir (WavLMForAudioFrameClassification)"] = directory / "hf_head"
    head.save_pretrained(paths["transformers dir (WavLMForAudioFrameClassification)"])

    prefixed = {f"wavlm.{key}": value.contiguous() for key, value in hf_state.items()}
    prefixed["classifier.weight"] = torch.zeros(3, 64)
    paths["bare transformers state dict"] = directory / "bare" / "wavlm.safetensors"
    paths["bare transformers state dict"].parent.mkdir()
    save_file(prefixed, paths["bare transformers state dict"])

    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    paths["torchaudio state dict"] = directory / "torchaudio.pt"
    torch.save(import_huggingface_model(model).state_dict(), paths["torchaudio state dict"])

    ours = load_wavlm_checkpoint(directory / "hf")[1]
    paths["fairseq (cfg dict)"] = directory / "fairseq.pt"
    torch.save({"cfg": fairseq_cfg(large), "model": to_fairseq(ours, large)}, paths["fairseq (cfg dict)"])
    paths["fairseq (nested Namespace cfg)"] = directory / "fairseq_nested.pt"
    nested = {"cfg": {"model": argparse.Namespace(**fairseq_cfg(large)), "task": {}}, "model": to_fairseq(ours, large)}
    torch.save(nested, paths["fairseq (nested Namespace cfg)"])

    paths["diarizen_lab"] = directory / "ours.pt"
    convert_wavlm(directory / "hf", paths["diarizen_lab"])
    return paths


@pytest.fixture(scope="module", params=[False, True], ids=["base", "large"])
def formats(request, tmp_path_factory) -> tuple[bool, dict[str, Path]]:
    large = request.param
    return large, write_all_formats(tmp_path_factory.mktemp("large" if large else "base"), large)


def architecture(config: WavLMConfig) -> WavLMConfig:
    """``config`` with default regularisation settings: what the weights determine."""
    return dataclasses.replace(config, **{name: getattr(WavLMConfig(), name) for name in TRAINING_FIELDS})


def test_every_format_loads_the_same_weights(formats):
    large, paths = formats
    expected_config = get_preset("wavlm_tiny_large" if large else "wavlm_tiny")
    assert expected_config.normalize_waveform == large
    reference = load_wavlm_checkpoint(paths["transformers dir (safetensors)"])[1]
    assert reference["encoder.rel_attn_embed.embedding.weight"].shape == (320, 4)
    for name, path in paths.items():
        config, state_dict = load_wavlm_checkpoint(path)
        assert architecture(config) == expected_config, name
        assert state_dict.keys() == reference.keys(), name
        for key, value in reference.items():
            assert torch.equal(state_dict[key], value), f"{name}: {key}"


def test_regularisation_is_read_from_the_checkpoint_config(formats):
    _, paths = formats
    fields = ("dropout", "attention_dropout", "activation_dropout", "projection_dropout", "layer_drop")
    # transformers' WavLMConfig defaults (hidden, attention, activation, feature projection dropout; layerdrop)
    hf = load_wavlm_checkpoint(paths["transformers dir (safetensors)"])[0]
    assert [getattr(hf, name) for name in fields] == [0.1, 0.1, 0.1, 0.0, 0.1]
    # the fairseq cfg's encoder_layerdrop; Microsoft's defaults elsewhere
    fairseq = load_wavlm_checkpoint(paths["fairseq (cfg dict)"])[0]
    assert [getattr(fairseq, name) for name in fields] == [0.1, 0.1, 0.0, 0.0, 0.05]


def test_load_and_save_round_trip(formats, tmp_path):
    _, paths = formats
    model = load_wavlm(paths["fairseq (cfg dict)"], layer_drop=0.2)
    assert isinstance(model, WavLM) and model.config.layer_drop == 0.2
    save_wavlm(tmp_path / "copy.pt", model)
    content = torch.load(tmp_path / "copy.pt", weights_only=True)
    assert content["format"] == FORMAT and content["config"]["layer_drop"] == 0.2
    reloaded = load_wavlm(tmp_path / "copy.pt")
    for (key, value), other in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(value, other), key


def test_pruned_architecture_round_trips(tmp_path):
    pruning = {"num_heads": [0, 2], "head_indices": [[], [1, 2]], "ffn_dims": [17, 0]}
    config = dataclasses.replace(get_preset("wavlm_tiny"), **pruning)
    model = WavLM(config)
    save_wavlm(tmp_path / "pruned.pt", model)
    loaded = load_wavlm(tmp_path / "pruned.pt")
    assert loaded.config == config
    assert loaded.encoder.layers[1].attention.head_indices == [1, 2]
    assert loaded.encoder.layers[0].attention is None and loaded.encoder.layers[1].feed_forward is None


# ---------------------------------------------------------------------------------------------------------------
# strictness and broken files


def error_for(path: Path) -> str:
    with pytest.raises(InputError) as error:
        load_wavlm_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_key_is_named(formats, tmp_path):
    _, paths = formats
    state = torch.load(paths["torchaudio state dict"], weights_only=True)
    del state["encoder.transformer.layers.1.feed_forward.output_dense.bias"]
    torch.save(state, tmp_path / "missing.pt")
    message = error_for(tmp_path / "missing.pt")
    assert "1 missing key (encoder.layers.1.feed_forward.output.bias)" in message
    assert "unexpected" not in message


def test_unexpected_keys_are_listed(formats, tmp_path):
    _, paths = formats
    content = torch.load(paths["fairseq (cfg dict)"], weights_only=True)
    for index in range(7):
        content["model"][f"encoder.layers.0.self_attn.extra{index}"] = torch.zeros(1)
    torch.save(content, tmp_path / "unexpected.pt")
    message = error_for(tmp_path / "unexpected.pt")
    assert "7 unexpected keys (encoder.layers.0.attention.extra0," in message and "(2 more)" in message


def test_shape_mismatch_is_reported(formats, tmp_path):
    _, paths = formats
    content = torch.load(paths["diarizen_lab"], weights_only=True)
    content["config"]["ffn_dims"] = [128, 64]
    torch.save(content, tmp_path / "mismatch.pt")
    message = error_for(tmp_path / "mismatch.pt")
    assert "encoder.layers.1.feed_forward.intermediate.weight (128, 64) in file, (64, 64) expected" in message


def test_save_refuses_mismatched_weights_and_leaves_nothing(tmp_path):
    model = WavLM(get_preset("wavlm_tiny"))
    state = model.state_dict()
    state.pop("encoder.layer_norm.bias")
    with pytest.raises(InputError, match="missing key"):
        save_wavlm(tmp_path / "out.pt", model.config, state)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="state dict"):
        save_wavlm(tmp_path / "out.pt", model.config)


@pytest.mark.parametrize("name", ["empty.pt", "empty.safetensors"])
def test_zero_byte_file(tmp_path, name):
    (tmp_path / name).touch()
    assert "empty (0 bytes)" in error_for(tmp_path / name)


@pytest.mark.parametrize("source", ["diarizen_lab", "bare transformers state dict"])
def test_truncated_file(formats, tmp_path, source):
    _, paths = formats
    data = paths[source].read_bytes()
    truncated = tmp_path / f"truncated{paths[source].suffix}"
    truncated.write_bytes(data[: len(data) // 2])
    assert "corrupt or truncated" in error_for(truncated)


def test_other_bad_inputs(formats, tmp_path):
    large, paths = formats
    assert "no such checkpoint file" in error_for(tmp_path / "absent.pt")

    (tmp_path / "empty_dir").mkdir()
    assert "config.json" in error_for(tmp_path / "empty_dir")

    content = torch.load(paths["fairseq (cfg dict)"], weights_only=True)
    torch.save({**content, "cfg": {**content["cfg"], "gru_rel_pos": False}}, tmp_path / "hubert.pt")
    assert "gru_rel_pos" in error_for(tmp_path / "hubert.pt")

    torch.save({**content, "cfg": {**content["cfg"], "conv_feature_layers": "__import__('os')"}}, tmp_path / "x.pt")
    assert "conv_feature_layers" in error_for(tmp_path / "x.pt")

    torch.save({"cfg": Path("not/allowed"), "model": {}}, tmp_path / "pickled.pt")
    assert "refused as unsafe: its pickle names pathlib" in error_for(tmp_path / "pickled.pt")

    torch.save({"format": "someone.else/3", "state_dict": {}}, tmp_path / "other.pt")
    assert "unsupported checkpoint format 'someone.else/3'" in error_for(tmp_path / "other.pt")

    torch.save({"weights": [1, 2]}, tmp_path / "list.pt")
    assert "not a WavLM checkpoint" in error_for(tmp_path / "list.pt")

    bad_config = tmp_path / "hf_bad"
    shutil.copytree(paths["transformers dir (safetensors)"], bad_config)
    (bad_config / "config.json").write_text('{"model_type": "wavlm",\n "hidden_size": }')
    assert f"{bad_config / 'config.json'}:2: invalid JSON" in error_for(bad_config)
    (bad_config / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    assert "not a WavLM config (model_type 'hubert')" in error_for(bad_config)


# ---------------------------------------------------------------------------------------------------------------
# conv_feature_layers parser


def test_parse_conv_feature_layers():
    assert parse_conv_feature_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2") == list(
        STANDARD_CONV_LAYERS
    )
    assert parse_conv_feature_layers(" 2 * [(8, 3, 2)] + [(4,2,1)]") == [(8, 3, 2), (8, 3, 2), (4, 2, 1)]
    assert parse_conv_feature_layers("[(1, 2, 3),]") == [(1, 2, 3)]


@pytest.mark.parametrize(
    "spec",
    [
        "__import__('os').system('true')",
        "[(512, 10, 5)] + __import__('os').listdir('.')",
        "[(512, 10, 5)] * 10**9",
        "[(512, 10, 5)] * 1000",
        "[(512, 10)]",
        "[(512.0, 10, 5)]",
        "[(True, 10, 5)]",
        "[(-1, 10, 5)]",
        "[x]",
        "[]",
        "[(512, 10, 5)",
        "[(512, 10, 5)] - [(1, 2, 3)]",
    ],
)
def test_parse_conv_feature_layers_rejects(spec):
    with pytest.raises(ValueError, match="conv_feature_layers"):
        parse_conv_feature_layers(spec)
