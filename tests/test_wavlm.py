"""Our WavLM: parity with transformers and torchaudio, frame geometry, pruned architectures and gate slots."""

from __future__ import annotations

import dataclasses
import json

import pytest
import tomli_w
import tomllib
import torch
from torch.nn import functional as F

from diarizen_lab.models.wavlm import WavLM, WavLMConfig, get_preset, load_wavlm
from diarizen_lab.models.wavlm.attention import relative_position_buckets

transformers = pytest.importorskip("transformers")
torchaudio = pytest.importorskip("torchaudio")

TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}
# our CPU inference convolves one waveform at a time and the references the whole batch: float32 rounding differs
INFERENCE_TOLERANCE = {"atol": 5e-5, "rtol": 1e-5}
NUM_SAMPLES = 16000 + 123  # not a multiple of the 320-sample step


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace every parameter by random values (normalisation weights around 1) and switch to eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * 0.2
            parameter.copy_(noise + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return module.eval()


def tiny_config(large: bool) -> WavLMConfig:
    config = get_preset("wavlm_tiny_large" if large else "wavlm_tiny")
    return dataclasses.replace(config, conv_bias=large)  # cover both conv variants


def transformers_model(config: WavLMConfig) -> torch.nn.Module:
    hf_config = transformers.WavLMConfig(
        conv_dim=[c for c, _, _ in config.conv_layers],
        conv_kernel=[k for _, k, _ in config.conv_layers],
        conv_stride=[s for _, _, s in config.conv_layers],
        conv_bias=config.conv_bias,
        feat_extract_norm="layer" if config.extractor_mode == "layer_norm" else "group",
        do_stable_layer_norm=config.layer_norm_first,
        hidden_size=config.embed_dim,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.total_heads,
        intermediate_size=config.ffn_dims[0],
        num_buckets=config.num_buckets,
        max_bucket_distance=config.max_distance,
        hidden_dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        feat_proj_dropout=config.projection_dropout,
        layerdrop=config.layer_drop,
        attn_implementation="eager",
    )
    return randomise(transformers.WavLMModel(hf_config))


def torchaudio_model(config: WavLMConfig) -> torch.nn.Module:
    model = torchaudio.models.wavlm_model(
        extractor_mode="layer_norm" if config.extractor_mode == "layer_norm" else "group_norm",
        extractor_conv_layer_config=config.conv_layers,
        extractor_conv_bias=config.conv_bias,
        encoder_embed_dim=config.embed_dim,
        encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=config.pos_conv_kernel,
        encoder_pos_conv_groups=config.pos_conv_groups,
        encoder_num_layers=config.num_layers,
        encoder_num_heads=config.total_heads,
        encoder_num_buckets=config.num_buckets,
        encoder_max_distance=config.max_distance,
        encoder_attention_dropout=0.0,
        encoder_ff_interm_features=config.ffn_dims[0],
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0,
        encoder_layer_norm_first=config.layer_norm_first,
        encoder_layer_drop=0.0,
        aux_num_out=None,
    )
    return randomise(model, seed=1)


def reference_input(waveforms: torch.Tensor, lengths: torch.Tensor | None, large: bool) -> torch.Tensor:
    """What the reference implementations are fed: Large models expect each waveform normalised (over its valid
    samples, padding zero), as transformers' feature extractor does; ours normalise inside the model."""
    if not large:
        return waveforms
    if lengths is None:
        lengths = torch.full((len(waveforms),), waveforms.size(1))
    rows = [F.pad(F.layer_norm(w[:n], (int(n),)), (0, waveforms.size(1) - int(n))) for w, n in zip(waveforms, lengths)]
    return torch.stack(rows)


def assert_all_close(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for index, (a, e) in enumerate(zip(actual, expected)):
        torch.testing.assert_close(a, e, **INFERENCE_TOLERANCE, msg=lambda m: f"hidden state {index}: {m}")


# ---------------------------------------------------------------------------------------------------------------
# parity with the reference implementations, weights transferred through our loaders


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # inside transformers
@pytest.mark.parametrize("large", [False, True], ids=["base", "large"])
def test_hidden_states_match_transformers(tmp_path, large):
    config = tiny_config(large)
    reference = transformers_model(config)
    reference.save_pretrained(tmp_path)
    model = load_wavlm(tmp_path).eval()
    assert model.config == config

    waveforms = torch.randn(2, NUM_SAMPLES, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([NUM_SAMPLES, 9000])
    attention_mask = (torch.arange(NUM_SAMPLES)[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        output = reference(reference_input(waveforms, None, large), output_hidden_states=True)
        padded_input = reference_input(waveforms, lengths, large)
        padded_output = reference(padded_input, attention_mask=attention_mask, output_hidden_states=True)
        actual = model(waveforms)
        actual_padded = model(waveforms, lengths)
        # transformers' last_hidden_state of a pre-norm model is its last hidden state after the final layer norm
        expected_last = model.encoder.layer_norm(actual[-1]) if large else actual[-1]

    assert len(actual) == config.num_layers + 1
    assert actual[0].shape == (2, model.num_frames(NUM_SAMPLES), config.embed_dim) == (2, 50, 64)
    assert_all_close(actual, list(output.hidden_states))
    assert_all_close(actual_padded, list(padded_output.hidden_states))
    torch.testing.assert_close(output.last_hidden_state, expected_last, **INFERENCE_TOLERANCE)
    # padding changes the second item only
    torch.testing.assert_close(actual_padded[-1][0], actual[-1][0], **TOLERANCE)
    assert not torch.allclose(actual_padded[-1][1], actual[-1][1])


@pytest.mark.parametrize("large", [False, True], ids=["base", "large"])
def test_hidden_states_match_torchaudio(tmp_path, large):
    config = tiny_config(large)
    reference = torchaudio_model(config)
    torch.save(reference.state_dict(), tmp_path / "torchaudio.pt")
    model = load_wavlm(tmp_path / "torchaudio.pt").eval()
    assert model.config == config

    waveforms = torch.randn(2, NUM_SAMPLES, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        layer_outputs, _ = reference.extract_features(reference_input(waveforms, None, large))
        final, _ = reference(reference_input(waveforms, None, large))
        actual = model(waveforms)
        # a pre-norm model's final layer norm applies to its output only, not to the hidden states
        expected_final = model.encoder.layer_norm(actual[-1]) if large else actual[-1]

    assert_all_close(actual[1:], layer_outputs)
    torch.testing.assert_close(final, expected_final, **INFERENCE_TOLERANCE)


# ---------------------------------------------------------------------------------------------------------------
# architecture and frame geometry


@pytest.mark.parametrize(
    ("preset", "builder", "count"),
    [("wavlm_base_plus", "wavlm_base", 94_381_168), ("wavlm_large", "wavlm_large", 315_452_096)],
)
def test_parameter_count_equals_torchaudio(preset, builder, count):
    with torch.device("meta"):
        ours = sum(p.numel() for p in WavLM(get_preset(preset)).parameters())
        theirs = sum(p.numel() for p in getattr(torchaudio.models, builder)().parameters())
    assert ours == theirs == count


def test_presets():
    assert get_preset("wavlm_base") == get_preset("wavlm_base_plus")
    large = get_preset("wavlm_large")
    assert (large.embed_dim, large.num_layers, large.total_heads, large.layer_norm_first) == (1024, 24, 16, True)
    assert large.extractor_mode == "layer_norm" and large.max_distance == 800
    with pytest.raises(ValueError, match="wavlm_tiny"):
        get_preset("wavlm_huge")


def test_frame_geometry():
    model = WavLM(get_preset("wavlm_tiny"))
    assert model.num_frames(8 * 16000) == 399
    assert model.num_frames(16 * 16000) == 799
    assert model.num_frames(399) == 0 and model.num_frames(400) == 1 and model.num_frames(719) == 1
    assert model.receptive_field_size() == 400
    assert model.receptive_field_size(2) - model.receptive_field_size(1) == 320
    assert model.receptive_field_size(399) == 398 * 320 + 400
    assert model.receptive_field_center(0) == 199
    assert model.receptive_field_center(10) == 10 * 320 + 199
    for num_samples in (400, 719, 720, NUM_SAMPLES):
        with torch.no_grad():
            frames = model.eval()(torch.zeros(1, num_samples))[0].shape[1]
        assert frames == model.num_frames(num_samples)


def test_relative_position_buckets():
    buckets = relative_position_buckets(2000, num_buckets=320, max_distance=800)
    row = buckets[1000]  # query at frame 1000, keys 0..1999
    assert row[1000] == 0 and row[1001] == 161 and row[999] == 1
    assert row[1000 + 79] == 160 + 79 and row[1000 - 79] == 79  # exact up to a quarter of the buckets
    assert row[-1] == 319 and row[0] == 159  # beyond max_distance: last bucket of each half
    assert torch.all(row[1000:].diff() >= 0) and torch.all(row[:1000].diff() <= 0)


def test_padded_batch_equals_unpadded_items():
    # layer-norm extractor: frames depend only on their own samples, so padding must not leak into valid frames
    model = randomise(WavLM(get_preset("wavlm_tiny_large")))
    waveforms = torch.randn(2, NUM_SAMPLES, generator=torch.Generator().manual_seed(4))
    short = 9000
    with torch.no_grad():
        padded = model(waveforms, torch.tensor([NUM_SAMPLES, short]))
        alone = model(waveforms[1:, :short])
    frames = model.num_frames(short)
    for batched, single in zip(padded, alone):  # attention over different lengths: float rounding differs
        torch.testing.assert_close(batched[1, :frames], single[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("preset", ["wavlm_tiny", "wavlm_tiny_large"])  # group-norm and layer-norm extractors
def test_cpu_inference_convolves_one_waveform_at_a_time_with_the_same_result(preset):
    extractor = randomise(WavLM(get_preset(preset))).feature_extractor
    waveforms = torch.randn(3, NUM_SAMPLES, generator=torch.Generator().manual_seed(6))
    batched = extractor(waveforms)  # autograd on: the whole batch at once
    calls = []
    first = extractor.layers[0]
    hook = first.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    with torch.no_grad():
        inference = extractor(waveforms)
    hook.remove()
    assert calls == [1, 1, 1]
    torch.testing.assert_close(inference, batched.detach(), **TOLERANCE)


def test_input_validation():
    model = WavLM(get_preset("wavlm_tiny"))
    with pytest.raises(ValueError, match="batch, sample"):
        model(torch.zeros(16000))
    with pytest.raises(ValueError, match="at least 400 valid samples"):
        model(torch.zeros(2, 16000), torch.tensor([16000, 300]))


def test_config_round_trips_through_json_and_toml():
    config = dataclasses.replace(
        get_preset("wavlm_tiny"), num_heads=[2, 0], ffn_dims=[100, 0], head_indices=[[1, 3], []], dropout=0.0
    )
    assert WavLMConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert WavLMConfig.from_dict(tomllib.loads(tomli_w.dumps(config.to_dict()))) == config
    unpruned = get_preset("wavlm_tiny")
    assert "head_indices" not in unpruned.to_dict()
    assert WavLMConfig.from_dict(tomllib.loads(tomli_w.dumps(unpruned.to_dict()))) == unpruned
    with pytest.raises(ValueError, match="unknown WavLMConfig field"):
        WavLMConfig.from_dict({**unpruned.to_dict(), "num_layer": 3})
    with pytest.raises(ValueError, match="head_indices"):
        dataclasses.replace(unpruned, head_indices=[[0, 0, 1, 2], [0, 1, 2, 3]])
    with pytest.raises(ValueError, match="only dropout"):
        unpruned.with_training(embed_dim=32)


# ---------------------------------------------------------------------------------------------------------------
# training behaviour


def test_feature_grad_mult_scales_extractor_gradient():
    waveforms = torch.randn(1, 4000, generator=torch.Generator().manual_seed(5))

    def gradients(mult: float) -> tuple[torch.Tensor | None, torch.Tensor]:
        model = randomise(WavLM(get_preset("wavlm_tiny").with_training(feature_grad_mult=mult, dropout=0.0)))
        model(waveforms)[-1].square().sum().backward()
        return model.feature_extractor.layers[0].conv.weight.grad, model.feature_projection.projection.weight.grad

    conv_full, projection_full = gradients(1.0)
    conv_tenth, projection_tenth = gradients(0.1)
    conv_frozen, projection_frozen = gradients(0.0)
    torch.testing.assert_close(conv_tenth, 0.1 * conv_full)
    torch.testing.assert_close(projection_tenth, projection_full)
    assert conv_frozen is None and torch.equal(projection_frozen, projection_full)


def test_layer_drop_repeats_hidden_states_in_training_only():
    model = randomise(WavLM(get_preset("wavlm_tiny").with_training(layer_drop=1.0, dropout=0.0)))
    waveforms = torch.randn(1, 4000)
    with torch.no_grad():
        evaluated = model(waveforms)
        model.train()
        dropped = model(waveforms)
    assert all(torch.equal(state, dropped[0]) for state in dropped)
    assert not torch.allclose(evaluated[-1], evaluated[0])


def test_runs_under_bfloat16_autocast():
    model = randomise(WavLM(get_preset("wavlm_tiny")))
    waveforms = torch.randn(2, 8000, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        exact = model(waveforms, torch.tensor([8000, 6000]))[-1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(waveforms, torch.tensor([8000, 6000]))[-1].float()
    similarity = torch.nn.functional.cosine_similarity(mixed.flatten(), exact.flatten(), dim=0)
    assert torch.isfinite(mixed).all() and similarity > 0.99


def test_pre_norm_final_layer_norm_is_frozen():
    model = WavLM(get_preset("wavlm_tiny_large"))
    assert not any(p.requires_grad for p in model.encoder.layer_norm.parameters())
    assert all(p.requires_grad for p in WavLM(get_preset("wavlm_tiny")).encoder.layer_norm.parameters())


# ---------------------------------------------------------------------------------------------------------------
# pruning readiness: zero gates on the full model == physically sliced model


class Mask(torch.nn.Module):
    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("values", values, persistent=False)

    def forward(self) -> torch.Tensor:
        return self.values


def keep_mask(size: int, keep: list[int]) -> Mask:
    values = torch.zeros(size)
    values[keep] = 1.0
    return Mask(values)


def sliced_state_dict(full: WavLM, keep_channels: list[int], keep_heads: list[int], keep_units: list[int]) -> dict:
    """Full-model weights cut down to: conv layer 3 channels, layer-0 heads and FFN units; layer 1 w/o attention."""
    state = {key: value.clone() for key, value in full.state_dict().items()}
    channels, heads, units = torch.tensor(keep_channels), torch.tensor(keep_heads), torch.tensor(keep_units)
    head_dim = full.config.head_dim
    rows = (heads[:, None] * head_dim + torch.arange(head_dim)).flatten()
    state["feature_extractor.layers.3.conv.weight"] = state["feature_extractor.layers.3.conv.weight"][channels]
    state["feature_extractor.layers.4.conv.weight"] = state["feature_extractor.layers.4.conv.weight"][:, channels]
    prefix = "encoder.layers.0."
    for name in ("q_proj", "k_proj", "v_proj"):
        for part in ("weight", "bias"):
            state[f"{prefix}attention.{name}.{part}"] = state[f"{prefix}attention.{name}.{part}"][rows]
    state[f"{prefix}attention.out_proj.weight"] = state[f"{prefix}attention.out_proj.weight"][:, rows]
    state[f"{prefix}attention.gru_rel_pos_const"] = state[f"{prefix}attention.gru_rel_pos_const"][:, heads]
    for part in ("weight", "bias"):
        state[f"{prefix}feed_forward.intermediate.{part}"] = state[f"{prefix}feed_forward.intermediate.{part}"][units]
    state[f"{prefix}feed_forward.output.weight"] = state[f"{prefix}feed_forward.output.weight"][:, units]
    return {key: value for key, value in state.items() if not key.startswith("encoder.layers.1.attention.")}


def test_zero_gates_equal_sliced_model():
    full = randomise(WavLM(get_preset("wavlm_tiny")))
    keep_channels, keep_heads, keep_units = list(range(0, 32, 3)), [1, 3], list(range(0, 128, 5))
    full.feature_extractor.layers[3].gate = keep_mask(32, keep_channels)
    full.encoder.layers[0].attention.gate = keep_mask(4, keep_heads)
    full.encoder.layers[0].feed_forward.gate = keep_mask(128, keep_units)
    full.encoder.layers[1].attention.output_gate = Mask(torch.tensor(0.0))
    full.encoder.layers[1].feed_forward.output_gate = Mask(torch.tensor(0.5))

    conv_layers = list(full.config.conv_layers)
    conv_layers[3] = (len(keep_channels), *conv_layers[3][1:])
    config = dataclasses.replace(
        full.config,
        conv_layers=conv_layers,
        num_heads=[2, 0],
        head_indices=[keep_heads, []],
        ffn_dims=[len(keep_units), 128],
    )
    pruned = WavLM(config).eval()
    pruned.load_state_dict(sliced_state_dict(full, keep_channels, keep_heads, keep_units))
    assert pruned.encoder.layers[1].attention is None
    with torch.no_grad():  # the 0.5 output gate, folded into the weights
        pruned.encoder.layers[1].feed_forward.output.weight.mul_(0.5)
        pruned.encoder.layers[1].feed_forward.output.bias.mul_(0.5)

    waveforms = torch.randn(2, NUM_SAMPLES, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert_all_close(pruned(waveforms), full(waveforms))
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in full.parameters())


def test_layer_without_heads_still_uses_relative_positions():
    # all heads of layer 0 (which used to own the bucket embedding) pruned: layer 1 keeps working
    config = dataclasses.replace(get_preset("wavlm_tiny"), num_heads=[0, 2], head_indices=[[], [0, 2]])
    model = randomise(WavLM(config))
    assert model.encoder.layers[0].attention is None
    assert model.encoder.rel_attn_embed.embedding.weight.shape == (320, 4)
    waveforms = torch.randn(1, NUM_SAMPLES)
    with torch.no_grad():
        before = model(waveforms)[-1]
        model.encoder.rel_attn_embed.embedding.weight[:, 2] += 1.0  # a column layer 1 reads
        changed = model(waveforms)[-1]
        model.encoder.rel_attn_embed.embedding.weight[:, 1] += 1.0  # a pruned head's column
        unchanged = model(waveforms)[-1]
    assert not torch.allclose(before, changed)
    assert torch.equal(changed, unchanged)


def test_pre_norm_layer_without_sublayers_is_identity():
    config = dataclasses.replace(get_preset("wavlm_tiny_large"), num_heads=[4, 0], ffn_dims=[128, 0])
    model = randomise(WavLM(config))
    layer = model.encoder.layers[1]
    assert layer.attention is None and layer.feed_forward is None
    assert layer.attention_norm is None and layer.feed_forward_norm is None
    with torch.no_grad():
        states = model(torch.randn(1, 4000))
    assert torch.equal(states[2], states[1])
