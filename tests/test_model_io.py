"""Self-describing model checkpoints: save_model / load_model_file round trips and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diarizen_lab.data.task import Task
from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.models.fbank_conformer import FbankConformer
from diarizen_lab.models.io import FORMAT, find_model_file, load_checkpoint, load_model_file, save_model
from diarizen_lab.models.wavlm_conformer import WavLMConformer

SMALL_HEAD = dict(task=Task(), attention_in=32, ffn_hidden=64, num_heads=2, num_layers=1, kernel_size=7)


def build(kind: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "wavlm":
        return WavLMConformer(wavlm="random:wavlm_tiny", **{**SMALL_HEAD, **kwargs}).eval()
    return FbankConformer(**{**SMALL_HEAD, **kwargs}).eval()


@pytest.fixture(scope="module")
def waveforms() -> torch.Tensor:
    return torch.randn(2, 1, 24000, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["fbank", "wavlm"])
def test_round_trip_gives_identical_outputs(tmp_path, waveforms, kind):
    model = build(kind, task=Task(max_speakers_per_chunk=3))
    path = save_model(tmp_path / "model.pt", model, meta={"epoch": 3, "val/der": 0.25})
    loaded = load_model_file(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.architecture() == model.architecture()
    with torch.inference_mode():
        torch.testing.assert_close(loaded(waveforms), model(waveforms), atol=0, rtol=0)
    checkpoint = load_checkpoint(path)
    assert checkpoint["format"] == FORMAT
    assert checkpoint["meta"] == {"epoch": 3, "val/der": 0.25}
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_wavlm_architecture_is_a_plain_config_without_checkpoint():
    args = build("wavlm").architecture()["args"]
    assert args["wavlm_checkpoint"] is None
    assert isinstance(args["wavlm"], dict)
    assert args["wavlm"] == build("wavlm").wavlm.config.to_dict()


def test_frozen_flag_survives_the_round_trip(tmp_path):
    path = save_model(tmp_path / "model.pt", build("wavlm", freeze_wavlm=True))
    loaded = load_model_file(path).train()
    assert loaded.freeze_wavlm and loaded.wavlm_parameters() == [] and not loaded.wavlm.training


@pytest.mark.parametrize("kind", ["fbank", "wavlm"])
def test_files_written_before_the_upstream_variants_keep_their_variant(tmp_path, waveforms, kind):
    old_variant = {"conformer_conv_norm": "layer"} | ({"layer_weighting": "softmax"} if kind == "wavlm" else {})
    model = build(kind, **old_variant)
    path = save_model(tmp_path / "model.pt", model)
    checkpoint = torch.load(path, weights_only=True)
    for name in old_variant:  # as written by the code before these options existed
        del checkpoint["model"]["args"][name]
    torch.save(checkpoint, path)
    loaded = load_model_file(path)
    assert loaded.architecture() == model.architecture()
    assert isinstance(loaded.conformer.blocks[0].convolution.depthwise_norm, torch.nn.LayerNorm)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(waveforms), model(waveforms), atol=0, rtol=0)
    # new models default to upstream DiariZen's variants
    new = build(kind).architecture()["args"]
    assert new["conformer_conv_norm"] == "batch" and new.get("layer_weighting", "linear") == "linear"


def test_load_from_checkpoint_dir_and_experiment_dir(tmp_path, waveforms):
    model = build("fbank")
    epoch_dir = tmp_path / "exp" / "checkpoints" / "epoch_0003"
    save_model(epoch_dir / "model.pt", model)
    best = tmp_path / "exp" / "checkpoints" / "best"
    best.symlink_to("epoch_0003")
    assert find_model_file(epoch_dir) == epoch_dir / "model.pt"
    assert find_model_file(tmp_path / "exp") == best / "model.pt"
    expected = model(waveforms)
    for source in (epoch_dir, tmp_path / "exp", best / "model.pt"):
        torch.testing.assert_close(load_model_file(source)(waveforms), expected, atol=0, rtol=0)


def one_line_error(path) -> str:
    with pytest.raises(DiarizenLabError) as error:
        load_model_file(path)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_zero_byte_and_truncated_files_are_reported(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.touch()
    assert "cannot read model checkpoint" in one_line_error(empty)
    truncated = tmp_path / "truncated.pt"
    save_model(truncated, build("fbank"))
    truncated.write_bytes(truncated.read_bytes()[:5000])
    assert "cannot read model checkpoint" in one_line_error(truncated)


def test_foreign_files_are_reported(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    assert f"not a {FORMAT} checkpoint" in one_line_error(foreign)
    unknown_class = tmp_path / "unknown.pt"
    torch.save({"format": FORMAT, "model": {"path": "diarizen_lab.models.nope.Model", "args": {}},
                "state_dict": {}, "meta": {}}, unknown_class)
    assert "cannot build model" in one_line_error(unknown_class)


def test_state_dict_mismatch_lists_the_keys(tmp_path):
    path = tmp_path / "model.pt"
    save_model(path, build("fbank"))
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["state_dict"]["classifier.bias"]
    checkpoint["state_dict"]["extra.weight"] = torch.zeros(1)
    checkpoint["state_dict"]["projection.weight"] = torch.zeros(3, 3)
    torch.save(checkpoint, path)
    message = one_line_error(path)
    assert "missing: classifier.bias" in message
    assert "unexpected: extra.weight" in message
    assert "wrong shape: projection.weight (3, 3) vs (32, 160)" in message


def test_missing_paths_are_reported(tmp_path):
    assert "no such model file" in one_line_error(tmp_path / "absent.pt")
    (tmp_path / "empty_dir").mkdir()
    assert "no model.pt" in one_line_error(tmp_path / "empty_dir")


def test_failed_save_leaves_previous_file_intact(tmp_path):
    path = save_model(tmp_path / "model.pt", build("fbank"))
    before = path.read_bytes()
    with pytest.raises(AttributeError):
        save_model(path, torch.nn.Linear(2, 2))  # no architecture()
    assert path.read_bytes() == before
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["model.pt"]


@pytest.mark.parametrize("kind", ["fbank", "wavlm"])
def test_model_files_written_before_the_task_block_still_load(tmp_path, waveforms, kind):
    """Earlier model.pt files kept chunk_size, sample_rate and the speaker counts among the model args."""
    model = build(kind, task=Task(chunk_size=5.0, max_speakers_per_chunk=3))
    path = save_model(tmp_path / "model.pt", model)
    checkpoint = torch.load(path, weights_only=True)
    architecture = checkpoint["model"]
    architecture["args"].update(architecture.pop("task"))  # the old layout
    torch.save(checkpoint, path)
    loaded = load_model_file(path)
    assert loaded.task == Task(chunk_size=5.0, max_speakers_per_chunk=3)
    assert loaded.specifications.duration == 5.0 and loaded.dimension == model.dimension
    with torch.inference_mode():
        torch.testing.assert_close(loaded(waveforms), model(waveforms), atol=0, rtol=0)
