"""Numerical fidelity to upstream DiariZen: its own files (../shared/upstream-fixtures) give its own numbers.

Every stage of the WavLM-Conformer (conv features, each hidden state, weighted sum, projection, Conformer,
logits, log-probabilities) is compared with what upstream's code computed, on an 8 s and an odd-length cut of
real speech, for a Base model, a pruned Base model (a layer without heads, one without FFN) and a pruned Large
model (waveform normalisation, pre-norm). The last test checks that each of the mistakes of issue 14 would be
caught: re-introduced into a correct model, it moves the log-probabilities far beyond the tolerance.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from diarizen_lab.cli import main
from diarizen_lab.data.task import Task
from diarizen_lab.errors import InputError
from diarizen_lab.models.layer_weighting import LayerWeighting
from diarizen_lab.models.upstream_keys import wavlm_conformer_state_dict_from_upstream
from diarizen_lab.models.wavlm import WavLM, load_wavlm
from diarizen_lab.models.wavlm.formats import FORMAT, load_wavlm_checkpoint
from diarizen_lab.models.wavlm.upstream import upstream_preset, upstream_preset_names, wavlm_config_from_upstream
from diarizen_lab.models.wavlm_conformer import WavLMConformer

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "upstream-fixtures"
FOLDERS = ["base_tiny", "base_tiny_pruned", "large_tiny_pruned"]
HF = FIXTURES / "wavlm_converted_from_hf"
TAGS = ("8s", "odd")
ATOL = 1e-4

pytestmark = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"needs upstream DiariZen's reference fixtures in {FIXTURES}"
)


def reference(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "reference.npz") as archive:
        return dict(archive)


def assert_close(actual: torch.Tensor, expected: np.ndarray, what: str) -> None:
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=0, atol=ATOL, err_msg=what)


def assert_hidden_states(model: WavLM, folder: Path, key: str) -> None:
    arrays = reference(folder)
    for tag in TAGS:
        with torch.inference_mode():
            hidden_states = model(torch.from_numpy(arrays[f"input_{tag}"]))
        expected = arrays[f"{key}_{tag}"]
        assert len(hidden_states) == len(expected)
        for index, state in enumerate(hidden_states):
            assert_close(state, expected[index], f"{folder.name} {tag}: hidden state {index}")


# ---------------------------------------------------------------------------------------------------------------
# WavLM files


@pytest.mark.parametrize("folder", FOLDERS)
def test_upstream_wavlm_file_gives_upstreams_hidden_states(folder):
    model = load_wavlm(FIXTURES / folder / "wavlm_only.bin").eval()
    assert_hidden_states(model, FIXTURES / folder, "wavlm_hidden")


def test_pruned_upstream_wavlm_file_keeps_its_layout():
    config, state_dict = load_wavlm_checkpoint(FIXTURES / "base_tiny_pruned" / "wavlm_only.bin")
    assert config.total_heads == 6 and config.head_dim == 16
    assert config.num_heads == [2, 0, 4] and config.head_indices == [[1, 4], [], [0, 2, 3, 5]]
    assert config.ffn_dims == [150, 77, 0]
    assert [channels for channels, _, _ in config.conv_layers] == [41, 37, 50, 29, 44, 33, 27]
    assert config.extractor_output_scale and state_dict["feature_extractor.output_scale"].shape == (27,)
    assert state_dict["encoder.rel_attn_embed.embedding.weight"].shape == (320, 6)  # every original head
    large = load_wavlm_checkpoint(FIXTURES / "large_tiny_pruned" / "wavlm_only.bin")[0]
    assert large.normalize_waveform and large.layer_norm_first and large.num_heads == [3, 2, 0]
    unpruned = load_wavlm_checkpoint(FIXTURES / "base_tiny" / "wavlm_only.bin")[0]
    assert not unpruned.extractor_output_scale and unpruned.head_indices is None  # all-ones scale: the identity


@pytest.mark.parametrize("source", ["converted file", "transformers dir"])
def test_hf_converted_wavlm_gives_upstreams_hidden_states(source):
    path = HF / ("wavlm-tiny-base-plus-converted.bin" if source == "converted file" else "wavlm-tiny-base-plus")
    model = load_wavlm(path).eval()
    assert_hidden_states(model, HF, "upstream_hidden")


def test_hf_last_hidden_state_is_the_last_hidden_state_of_this_post_norm_model():
    model = load_wavlm(HF / "wavlm-tiny-base-plus").eval()
    arrays = reference(HF)
    for tag in TAGS:
        with torch.inference_mode():
            last = model(torch.from_numpy(arrays[f"input_{tag}"]))[-1]
        assert_close(last, arrays[f"hf_last_hidden_state_{tag}"], f"last hidden state {tag}")


@pytest.mark.parametrize(
    "source", ["large_tiny_pruned/wavlm_only.bin", "wavlm_converted_from_hf/wavlm-tiny-base-plus-converted.bin"]
)
def test_checkpoints_convert_writes_our_file_with_the_same_outputs(tmp_path, source):
    destination = tmp_path / "wavlm.pt"
    assert main(["checkpoints", "convert", str(FIXTURES / source), str(destination)]) == 0
    assert torch.load(destination, weights_only=True)["format"] == FORMAT
    folder = (FIXTURES / source).parent
    assert_hidden_states(load_wavlm(destination).eval(), folder, "upstream_hidden" if folder == HF else "wavlm_hidden")


def test_upstream_presets_map_to_our_architectures():
    assert upstream_preset_names() == ["wavlm_base", "wavlm_large", "wavlm_base_s80_md", "wavlm_large_s80_md"]
    base = wavlm_config_from_upstream(upstream_preset("wavlm_base"))
    assert (base.embed_dim, base.num_layers, base.total_heads, base.normalize_waveform) == (768, 12, 12, False)
    large = wavlm_config_from_upstream(upstream_preset("wavlm_large"))
    assert (large.embed_dim, large.num_layers, large.layer_norm_first, large.normalize_waveform) == (
        1024, 24, True, True,
    )
    pruned = wavlm_config_from_upstream(upstream_preset("wavlm_base_s80_md"))
    assert pruned.head_indices is not None and pruned.conv_layers[0][0] == 90
    # what upstream computes while training: no layer drop on its hidden-state path, extractor gradient x0.1
    assert (pruned.layer_drop, pruned.feature_grad_mult, pruned.projection_dropout) == (0.0, 0.1, 0.1)
    for name in upstream_preset_names():
        with torch.device("meta"):
            WavLM(wavlm_config_from_upstream(upstream_preset(name)))  # every preset builds
    with pytest.raises(ValueError, match="unknown upstream WavLM preset"):
        upstream_preset("wavlm_tiny_base")


def test_upstream_file_still_carrying_pruning_gates_is_refused(tmp_path):
    content = torch.load(FIXTURES / "base_tiny" / "wavlm_only.bin", weights_only=True)
    content["config"]["encoder_prune_attention_heads"] = True
    torch.save(content, tmp_path / "gated.bin")
    with pytest.raises(InputError, match="encoder_prune_attention_heads is set: .* apply upstream's pruning") as error:
        load_wavlm(tmp_path / "gated.bin")
    assert "gated.bin" in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------------------------------------------------------------
# the whole WavLM-Conformer


def upstream_model(folder: str) -> WavLMConformer:
    """Our WavLM-Conformer with the weights of a model folder's ``pytorch_model.bin``, built from its
    ``config.toml`` and ``wavlm_config.json`` (what the tiny preset name stands for)."""
    args = tomllib.loads((FIXTURES / folder / "config.toml").read_text())["model"]["args"]
    wavlm_config = json.loads((FIXTURES / folder / "wavlm_config.json").read_text())["config"]
    state_dict = torch.load(FIXTURES / folder / "pytorch_model.bin", weights_only=True)
    config, ours = wavlm_conformer_state_dict_from_upstream(state_dict, wavlm_config)
    model = WavLMConformer(
        wavlm=config.to_dict(),
        attention_in=args["attention_in"],
        ffn_hidden=args["ffn_hidden"],
        num_heads=args["num_head"],
        num_layers=args["num_layer"],
        dropout=args["dropout"],
        task=Task(chunk_size=args["chunk_size"], max_speakers_per_chunk=args["max_speakers_per_chunk"]),
    )
    assert args["wavlm_layer_num"] == config.num_layers + 1 and args["wavlm_feat_dim"] == config.embed_dim
    model.load_state_dict(ours, strict=True)
    return model.eval()


def stages(model: WavLMConformer, waveforms: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every intermediate output of one forward pass, named as in ``reference.npz``."""
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str, transform: Callable = lambda x: x) -> Callable:
        return lambda module, inputs, output: captured.__setitem__(name, transform(output))

    hooks = [
        model.wavlm.feature_extractor.register_forward_hook(keep("conv_features", lambda x: x.transpose(1, 2))),
        model.wavlm.register_forward_hook(keep("wavlm_hidden", torch.stack)),
        model.layer_weighting.register_forward_hook(keep("weighted_sum")),
        model.projection_norm.register_forward_hook(keep("proj_lnorm")),
        model.conformer.register_forward_hook(keep("conformer_out")),
        model.classifier.register_forward_hook(keep("logits")),
    ]
    with torch.inference_mode():
        captured["log_probs"] = model(waveforms)
    for hook in hooks:
        hook.remove()
    return captured


@pytest.mark.parametrize("folder", FOLDERS)
def test_upstream_model_reproduces_every_stage(folder):
    model = upstream_model(folder)
    arrays = reference(FIXTURES / folder)
    for tag in TAGS:
        waveforms = torch.from_numpy(arrays[f"input_{tag}"])[:, None, :]
        outputs = stages(model, waveforms)
        for name, value in outputs.items():
            assert_close(value, arrays[f"{name}_{tag}"], f"{folder} {tag}: {name}")
        assert model.num_frames(waveforms.shape[-1]) == int(arrays[f"num_frames_{tag}"])
    # frame duration and step as upstream's; the frame centres are not: upstream chains pyannote's rounded-down
    # per-layer centres (frame 0 at sample 79), ours is the true centre of the 400-sample field (sample 199)
    _, duration, step = arrays["receptive_field_start_duration_step"]
    assert (model.receptive_field.duration, model.receptive_field.step) == pytest.approx((duration, step))


def undo_waveform_normalisation(model: WavLMConformer) -> None:
    model.wavlm.config.normalize_waveform = False


def softmax_layer_weighting(model: WavLMConformer) -> None:
    weighting = LayerWeighting(model.layer_weighting.num_layers, "softmax")
    with torch.no_grad():
        weighting.logits.copy_(model.layer_weighting.weight)
    model.layer_weighting = weighting


def fold_output_scale_into_projection_norm(model: WavLMConformer) -> None:
    extractor, norm = model.wavlm.feature_extractor, model.wavlm.feature_projection.layer_norm
    with torch.no_grad():
        norm.weight.mul_(extractor.output_scale)
        norm.bias.mul_(extractor.output_scale)
    extractor.output_scale = None


def skip_conformer_batch_norm(model: WavLMConformer) -> None:
    for block in model.conformer.blocks:
        block.convolution.depthwise_norm = torch.nn.Identity()


def final_layer_norm_on_last_hidden_state(model: WavLMConformer) -> None:
    norm = model.wavlm.encoder.layer_norm
    model.wavlm.register_forward_hook(lambda module, inputs, states: [*states[:-1], norm(states[-1])])


def relative_position_bias_of_layer_0_heads_only(model: WavLMConformer) -> None:
    layer_0 = set(model.wavlm.config.layer_head_indices(0))
    embedding = model.wavlm.encoder.rel_attn_embed.embedding.weight
    with torch.no_grad():
        embedding[:, [h for h in range(embedding.shape[1]) if h not in layer_0]] = 0.0


@pytest.mark.parametrize(
    "folder, mistake",
    [
        ("large_tiny_pruned", undo_waveform_normalisation),
        ("base_tiny", softmax_layer_weighting),
        ("large_tiny_pruned", softmax_layer_weighting),
        ("base_tiny_pruned", fold_output_scale_into_projection_norm),
        ("large_tiny_pruned", fold_output_scale_into_projection_norm),
        ("base_tiny_pruned", skip_conformer_batch_norm),
        ("large_tiny_pruned", final_layer_norm_on_last_hidden_state),
        ("base_tiny_pruned", relative_position_bias_of_layer_0_heads_only),
        ("large_tiny_pruned", relative_position_bias_of_layer_0_heads_only),
    ],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_each_known_mistake_is_caught(folder, mistake):
    model = upstream_model(folder)
    mistake(model)
    arrays = reference(FIXTURES / folder)
    with torch.inference_mode():
        log_probs = model(torch.from_numpy(arrays["input_8s"])[:, None, :]).numpy()
    assert np.abs(log_probs - arrays["log_probs_8s"]).max() > 10 * ATOL
