"""Segmentation models: Conformer, front ends, pyannote Model interface, parameter groups, frozen WavLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyannote.audio
import pytest
import soundfile as sf
import torch
import torchaudio
from pyannote.audio import Inference
from pyannote.audio.utils.powerset import Powerset
from pyannote.core import SlidingWindowFeature

from diarizen_lab.config import resolve_reference
from diarizen_lab.data.task import Task
from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.models.conformer import ConformerEncoder
from diarizen_lab.models.fbank import LogMelFbank
from diarizen_lab.models.fbank_conformer import FbankConformer
from diarizen_lab.models.layer_weighting import LayerWeighting
from diarizen_lab.models.wavlm import WavLM, WavLMConfig, get_preset
from diarizen_lab.models.wavlm_conformer import WavLMConformer
from diarizen_lab.store.wavlm_formats import save_wavlm

SAMPLE_WAV = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
SMALL_HEAD = dict(task=Task(), attention_in=32, ffn_hidden=64, num_heads=2, num_layers=1, kernel_size=7)


def tiny_wavlm_conformer(**kwargs) -> WavLMConformer:
    return WavLMConformer(wavlm="random:wavlm_tiny", **{**SMALL_HEAD, **kwargs})


def tiny_fbank_conformer(**kwargs) -> FbankConformer:
    return FbankConformer(**{**SMALL_HEAD, **kwargs})


def seeded(factory, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return factory(**kwargs).eval()


# ---------------------------------------------------------------------------------------------------------------
# Building blocks


def test_conformer_keeps_shape_and_validates_settings():
    encoder = ConformerEncoder(dim=16, ffn_hidden=32, num_heads=4, num_layers=2, kernel_size=5, dropout=0.0).eval()
    x = torch.randn(3, 21, 16)
    y = encoder(x)
    assert y.shape == (3, 21, 16)
    # each block ends with a LayerNorm (unit gain, zero bias at init)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 21), atol=1e-5, rtol=0)
    # a chunk's output does not depend on the other chunks of the batch (no batch statistics)
    torch.testing.assert_close(encoder(x[1:2]), y[1:2], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="odd"):
        ConformerEncoder(dim=16, kernel_size=4)
    with pytest.raises(ValueError, match="divisible"):
        ConformerEncoder(dim=18, num_heads=4)


def test_layer_weighting_starts_uniform_and_is_a_softmax_combination():
    weighting = LayerWeighting(3)
    states = [torch.full((2, 5, 4), float(value)) for value in (1.0, 2.0, 6.0)]
    torch.testing.assert_close(weighting.weights, torch.full((3,), 1 / 3))
    torch.testing.assert_close(weighting(states), torch.full((2, 5, 4), 3.0))
    with torch.no_grad():
        weighting.logits.copy_(torch.tensor([0.0, np.log(3.0), 0.0]))
    # weights 1/5, 3/5, 1/5
    torch.testing.assert_close(weighting(states), torch.full((2, 5, 4), 1 / 5 + 6 / 5 + 6 / 5))
    with pytest.raises(ValueError, match="Expected 3 hidden states"):
        weighting(states[:2])


@pytest.mark.parametrize("frame_stacking, size, step, frames_8s", [(1, 400, 160, 798), (2, 560, 320, 399)])
def test_fbank_frame_geometry_matches_its_output(frame_stacking, size, step, frames_8s):
    fbank = LogMelFbank(frame_stacking=frame_stacking)
    assert fbank.receptive_field_size(1) == size
    assert fbank.receptive_field_size(2) - fbank.receptive_field_size(1) == step
    assert fbank.receptive_field_center(0) == (size - 1) // 2
    assert fbank.num_frames(128000) == frames_8s
    for num_samples in (400, 959, 16000, 16321, 128000):
        features = fbank(torch.randn(2, num_samples))
        assert features.shape == (2, fbank.num_frames(num_samples), 80 * frame_stacking)


def test_fbank_is_torchaudio_log_mel_with_per_chunk_mean_normalisation():
    waveforms = torch.randn(2, 16000) * 0.1
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=400, hop_length=160, n_mels=80, center=False, power=2.0
    )(waveforms)  # (batch, mel, frame)
    reference = torch.log(reference + 1e-6).transpose(1, 2)
    reference = reference - reference.mean(dim=1, keepdim=True)
    torch.testing.assert_close(LogMelFbank(frame_stacking=1)(waveforms), reference, atol=1e-4, rtol=1e-4)
    stacked = LogMelFbank(frame_stacking=2)(waveforms)
    torch.testing.assert_close(stacked[:, 3, :80], reference[:, 6], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(stacked[:, 3, 80:], reference[:, 7], atol=1e-4, rtol=1e-4)


def pruned_tiny_config() -> WavLMConfig:
    """wavlm_tiny with layer 0 keeping heads 1 and 3 and no FFN, layer 1 keeping a 96-unit FFN."""
    config = get_preset("wavlm_tiny").to_dict()
    config.update(num_heads=[2, 4], head_indices=[[1, 3], [0, 1, 2, 3]], ffn_dims=[0, 96])
    return WavLMConfig.from_dict(config)


def test_wavlm_checkpoint_gives_architecture_and_weights(tmp_path):
    torch.manual_seed(0)
    pretrained = WavLM(pruned_tiny_config()).eval()
    save_wavlm(tmp_path / "pruned.pt", pretrained)
    model = WavLMConformer(wavlm_checkpoint=str(tmp_path / "pruned.pt"), **SMALL_HEAD).eval()
    assert model.wavlm.config == pruned_tiny_config()  # not the default "wavlm_base_plus"
    for name, value in pretrained.state_dict().items():
        torch.testing.assert_close(model.wavlm.state_dict()[name], value, atol=0, rtol=0)
    args = model.architecture()["args"]
    assert args["wavlm"] == pruned_tiny_config().to_dict() and args["wavlm_checkpoint"] is None
    assert model.layer_weighting.logits.numel() == 3
    # the architecture alone rebuilds the same network (random weights, no checkpoint needed)
    rebuilt = WavLMConformer(**args, task=model.task)
    assert [(n, p.shape) for n, p in rebuilt.named_parameters()] == [(n, p.shape) for n, p in model.named_parameters()]


def test_architecture_and_checkpoint_together_are_refused(tmp_path):
    save_wavlm(tmp_path / "pruned.pt", WavLM(pruned_tiny_config()))
    with pytest.raises(DiarizenLabError, match="set either wavlm .* or wavlm_checkpoint"):
        WavLMConformer(wavlm="random:wavlm_tiny", wavlm_checkpoint=tmp_path / "pruned.pt", **SMALL_HEAD)


def test_unknown_wavlm_asset_is_a_one_line_error(tmp_path):
    with pytest.raises(DiarizenLabError, match="no-such-wavlm") as error:
        WavLMConformer(wavlm_checkpoint=resolve_reference("no-such-wavlm", tmp_path), **SMALL_HEAD)
    assert "\n" not in str(error.value)


def test_preset_names_are_random_init_architectures_and_say_so():
    with pytest.raises(DiarizenLabError, match="write wavlm = 'random:wavlm_base_plus'") as error:
        WavLMConformer(wavlm="wavlm_base_plus", **SMALL_HEAD)
    assert "wavlm_checkpoint = 'wavlm-base-plus'" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DiarizenLabError, match="not an architecture"):
        WavLMConformer(wavlm="wavlm-base-plus", **SMALL_HEAD)
    with pytest.raises(DiarizenLabError, match="unknown WavLM architecture 'random:wavlm_huge'"):
        WavLMConformer(wavlm="random:wavlm_huge", **SMALL_HEAD)


# ---------------------------------------------------------------------------------------------------------------
# pyannote Model interface


@pytest.mark.parametrize("factory", [tiny_fbank_conformer, tiny_wavlm_conformer], ids=["fbank", "wavlm"])
def test_specifications_come_from_the_task(factory):
    task = Task(chunk_size=5.0, max_speakers_per_chunk=3, max_speakers_per_frame=2)
    model = factory(task=task)
    specifications = model.specifications
    assert model.task is task and model.hparams.sample_rate == task.sample_rate
    assert specifications.duration == 5.0
    assert specifications.classes == ["speaker#1", "speaker#2", "speaker#3"]
    assert specifications.powerset and specifications.permutation_invariant
    assert specifications.num_powerset_classes == Powerset(3, 2).num_powerset_classes == 7
    assert model.dimension == 7
    assert model.architecture()["task"] == {"sample_rate": 16000, "chunk_size": 5.0, "max_speakers_per_chunk": 3,
                                            "max_speakers_per_frame": 2}
    with pytest.raises(DiarizenLabError, match=r"\[task\] need 1 <= max_speakers_per_frame"):
        Task(max_speakers_per_chunk=2, max_speakers_per_frame=3)


@pytest.mark.parametrize(
    "factory, frames", [(tiny_fbank_conformer, (399, 799)), (tiny_wavlm_conformer, (399, 799))], ids=["fbank", "wavlm"]
)
def test_forward_shapes_match_frame_functions(factory, frames):
    model = seeded(factory)
    for seconds, expected in zip((8, 16), frames):
        num_samples = seconds * 16000
        assert model.num_frames(num_samples) == expected
        with torch.inference_mode():
            log_probabilities = model(torch.randn(2, 1, num_samples))
        assert log_probabilities.shape == (2, expected, 11)
        torch.testing.assert_close(log_probabilities.exp().sum(-1), torch.ones(2, expected))
    # 20 ms frames for both front ends
    assert model.receptive_field.step == pytest.approx(0.02)


def test_wavlm_front_end_geometry_is_the_wavlms():
    model = tiny_wavlm_conformer()
    wavlm = WavLM(get_preset("wavlm_tiny"))
    assert model.receptive_field_size(1) == wavlm.receptive_field_size(1) == 400
    assert model.receptive_field_center(10) == wavlm.receptive_field_center(10)
    assert model.receptive_field.duration == pytest.approx(0.025)


@pytest.mark.parametrize("factory", [tiny_fbank_conformer, tiny_wavlm_conformer], ids=["fbank", "wavlm"])
def test_pyannote_inference_on_sample_wav(factory):
    model = seeded(factory)
    duration = sf.info(SAMPLE_WAV).duration
    inference = Inference(model, window="sliding", duration=8.0, step=4.0, batch_size=4)
    output = inference(str(SAMPLE_WAV))
    assert isinstance(output, SlidingWindowFeature)
    num_chunks = int(np.ceil((duration - 8.0) / 4.0)) + 1
    assert output.data.shape == (num_chunks, 399, 4)  # powerset -> multilabel: one column per local speaker
    assert set(np.unique(output.data)) <= {0.0, 1.0}
    assert output.data.sum(axis=2).max() <= 2  # at most max_speakers_per_frame active
    assert output.sliding_window.step == 4.0


# ---------------------------------------------------------------------------------------------------------------
# Channels


def test_channel_selection_picks_the_configured_channel():
    model = seeded(tiny_fbank_conformer, selected_channel=2, num_channels=3)
    waveforms = torch.randn(1, 3, 16000)
    with torch.inference_mode():
        torch.testing.assert_close(model(waveforms), model(waveforms[:, 2:3]))
        assert not torch.allclose(model(waveforms), model(waveforms[:, 0:1]))
    with pytest.raises(ValueError, match="only 2 channels"):
        model(waveforms[:, :2])
    with pytest.raises(ValueError, match="selected_channel"):
        tiny_fbank_conformer(selected_channel=1)  # mono model


def test_multichannel_model_selects_a_channel_of_a_file_in_inference(tmp_path):
    rng = np.random.default_rng(0)
    channels = (0.1 * rng.standard_normal((2, 9 * 16000))).astype("float32")
    sf.write(tmp_path / "stereo.wav", channels.T, 16000)
    sf.write(tmp_path / "right.wav", channels[1], 16000)
    model = seeded(tiny_fbank_conformer, selected_channel=1, num_channels=2)
    inference = Inference(model, window="sliding", duration=8.0, step=1.0, skip_conversion=True)
    stereo = inference(str(tmp_path / "stereo.wav")).data
    right = inference(str(tmp_path / "right.wav")).data
    np.testing.assert_allclose(stereo, right, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Parameter groups and frozen WavLM


@pytest.mark.parametrize("freeze", [False, True])
def test_parameter_groups_are_disjoint_and_complete(freeze):
    model = tiny_wavlm_conformer(freeze_wavlm=freeze)
    wavlm = {id(p) for p in model.wavlm_parameters()}
    rest = {id(p) for p in model.non_wavlm_parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert not wavlm & rest
    assert wavlm | rest == trainable
    assert wavlm == (set() if freeze else {id(p) for p in model.wavlm.parameters()})
    assert id(model.layer_weighting.logits) in rest

    fbank = tiny_fbank_conformer()
    assert fbank.wavlm_parameters() == []
    assert {id(p) for p in fbank.non_wavlm_parameters()} == {id(p) for p in fbank.parameters()}


def test_frozen_wavlm_is_unchanged_by_training_and_stays_in_eval_mode():
    model = seeded(tiny_wavlm_conformer, freeze_wavlm=True).train()
    assert not model.wavlm.training and model.conformer.training
    before_wavlm = {k: v.clone() for k, v in model.wavlm.state_dict().items()}
    before_head = model.classifier.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    loss = -model(torch.randn(2, 1, 16000))[..., 0].mean()
    loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in model.wavlm.parameters())
    for name, value in model.wavlm.state_dict().items():
        torch.testing.assert_close(value, before_wavlm[name], atol=0, rtol=0)
    assert not torch.equal(model.classifier.weight, before_head)


def test_trainable_wavlm_receives_gradients():
    model = seeded(tiny_wavlm_conformer).train()
    model(torch.randn(1, 1, 16000)).mean().backward()
    assert all(p.grad is not None for p in model.wavlm_parameters() if p.requires_grad)
    assert model.layer_weighting.logits.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------------
# Real-size architectures (no weights are allocated on the meta device)


def test_wavlm_base_plus_conformer_has_wavlm_base_plus_parameters():
    with torch.device("meta"):
        model = WavLMConformer(wavlm="random:wavlm_base_plus", task=Task())
        reference = torchaudio.models.wavlm_base()
    num_wavlm = sum(p.numel() for p in model.wavlm_parameters())
    assert num_wavlm == sum(p.numel() for p in reference.parameters()) == 94_381_168
    assert model.layer_weighting.logits.numel() == 13
    assert model.projection.in_features == 768 and model.dimension == 11


def test_fbank_conformer_default_size():
    model = FbankConformer(task=Task())
    d, f = 256, 1024
    feed_forward = 2 * d + (d * f + f) + (f * d + d)
    attention = 2 * d + (3 * d * d + 3 * d) + (d * d + d)
    convolution = 2 * d + (d * 2 * d + 2 * d) + (d * 31 + d) + 2 * d + (d * d + d)
    block = 2 * feed_forward + attention + convolution + 2 * d
    head = (160 * d + d) + 2 * d + (d * 11 + 11)
    assert sum(p.numel() for p in model.parameters()) == 4 * block + head == 6_136_331
