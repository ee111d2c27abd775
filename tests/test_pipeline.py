"""The diarization pipeline end to end, offline: pyannote's SpeakerDiarization around our segmentation models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning
import numpy as np
import pyannote.audio
import pytest
import soundfile as sf
import torch
import torchaudio.functional
from pyannote.audio.core.task import Problem, Resolution, Specifications
from pyannote.audio.models.embedding import WeSpeakerResNet34
from pyannote.audio.models.segmentation import PyanNet
from pyannote.core import SlidingWindow, SlidingWindowFeature
from scipy.ndimage import median_filter

from diarizen_lab.data.rttm import read_rttm, to_annotations
from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.evaluation import audio
from diarizen_lab.evaluation.audio import load_audio
from diarizen_lab.evaluation.embedding import FbankStatsEmbedding, load_embedding
from diarizen_lab.evaluation.pipeline import (
    DiarizationConfig,
    build_pipeline,
    diarize_file,
    load_plda,
    median_filter_frames,
)
from diarizen_lab.evaluation.rttm import write_rttm
from diarizen_lab.evaluation.score import score_recording
from diarizen_lab.store import AssetNotFoundError

SAMPLE = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
SAMPLE_RTTM = SAMPLE.with_suffix(".rttm")
SMOKE = DiarizationConfig(embedding="fbank-stats", segmentation_batch_size=8, embedding_batch_size=16)


def pyannet(seed: int = 0, constant_class: int | None = None, duration: float = 10.0) -> PyanNet:
    """A small random-weight powerset PyanNet (3 speakers, at most 2 at once, 10 s chunks by default).

    With ``constant_class``, the classifier ignores its input and always outputs that powerset class
    (0: nobody speaks, 1: the first local speaker speaks).
    """
    torch.manual_seed(seed)
    model = PyanNet(lstm={"hidden_size": 32, "num_layers": 1}, linear={"hidden_size": 32, "num_layers": 1})
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME, duration=duration,
        classes=["speaker#1", "speaker#2", "speaker#3"], powerset_max_classes=2, permutation_invariant=True,
    )
    model.build()
    if constant_class is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.fill_(-10.0)
            model.classifier.bias[constant_class] = 10.0
    return model.eval()


def write_audio(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    sf.write(path, samples, sample_rate, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    samples, rate = sf.read(SAMPLE, dtype="float32")
    assert rate == 16000 and samples.ndim == 1
    return samples


@pytest.fixture
def no_network_log(tmp_path, monkeypatch):
    """Every refused connection attempt is logged here (the suite's guard refuses them all)."""
    log = tmp_path / "network.log"
    monkeypatch.setenv("DIARIZEN_LAB_NETWORK_LOG", str(log))
    yield log
    assert not log.exists(), log.read_text()


def test_end_to_end_on_sample_with_ahc(tmp_path, no_network_log):
    pipeline = build_pipeline(pyannet(), dataclasses.replace(SMOKE, median_filter=11))
    diarization = diarize_file(pipeline, SAMPLE, num_speakers=2)
    assert diarization.uri == "sample"
    assert diarization.labels() == ["SPEAKER_00", "SPEAKER_01"]
    assert 0.0 <= diarization.get_timeline().extent().start and diarization.get_timeline().extent().end <= 30.0
    assert diarize_file(pipeline, SAMPLE, num_speakers=2) == diarization  # deterministic

    rttm = tmp_path / "sample.rttm"
    write_rttm(rttm, diarization, "sample")
    reread = to_annotations(read_rttm(rttm))["sample"]
    assert reread.get_timeline().support().duration() == pytest.approx(
        diarization.get_timeline().support().duration(), abs=0.01
    )
    reference = to_annotations(read_rttm(SAMPLE_RTTM))["sample"]
    errors = score_recording(reference, reread)
    assert errors.scored == pytest.approx(score_recording(reference, reference).scored) and errors.der > 0


def test_one_speaker_everywhere_covers_the_whole_file():
    pipeline = build_pipeline(pyannet(constant_class=1), SMOKE)
    diarization = diarize_file(pipeline, SAMPLE)
    assert len(diarization.labels()) == 1
    support = diarization.get_timeline().support()
    assert len(support) == 1 and support[0].start < 0.05 and 29.95 < support[0].end <= 30.0  # up to a frame


def test_file_shorter_than_one_window_is_padded_and_clipped(tmp_path, sample):
    short = write_audio(tmp_path / "short.wav", sample[: 4 * 16000], 16000)
    diarization = diarize_file(build_pipeline(pyannet(constant_class=1), SMOKE), short)
    # the model "hears" speech in the zero padding up to 10 s as well: the output must stop at 4 s
    assert diarization.get_timeline().extent().end == pytest.approx(4.0, abs=1e-6)
    assert diarize_file(build_pipeline(pyannet(), SMOKE), short).get_timeline().extent().end <= 4.0


def test_silent_file_gives_an_empty_rttm(tmp_path):
    silent = write_audio(tmp_path / "silent.wav", np.zeros(5 * 16000, dtype=np.float32), 16000)
    diarization = diarize_file(build_pipeline(pyannet(constant_class=0), SMOKE), silent)
    assert len(diarization) == 0
    write_rttm(tmp_path / "silent.rttm", diarization, "silent")
    assert (tmp_path / "silent.rttm").read_text() == ""
    diarize_file(build_pipeline(pyannet(), SMOKE), silent)  # a model that does hear speech there: no crash either


def test_channel_selection_and_downmix(tmp_path, sample, monkeypatch):
    speech = sample[: 15 * 16000]
    noise = np.random.default_rng(0).normal(0, 0.05, speech.shape).astype(np.float32)
    mono = write_audio(tmp_path / "mono.wav", speech, 16000)
    stereo = write_audio(tmp_path / "stereo.wav", np.stack([noise, speech], axis=1), 16000)
    monkeypatch.setattr(audio, "BLOCK_FRAMES", 7000)  # read in many blocks (not a divisor of the length)
    assert torch.equal(load_audio(stereo, 16000, channel=1)[0], torch.from_numpy(speech))
    assert torch.allclose(load_audio(stereo, 16000)[0], torch.from_numpy((noise + speech) / 2))
    with pytest.raises(InputError, match=r"channel 2 requested but the file has 2 channel\(s\)"):
        load_audio(stereo, 16000, channel=2)

    pipeline = build_pipeline(pyannet(), SMOKE)
    expected = diarize_file(pipeline, mono, num_speakers=2)
    assert len(expected.labels()) == 2
    assert diarize_file(pipeline, stereo, channel=1, uri="mono", num_speakers=2) == expected
    channel_config = dataclasses.replace(SMOKE, channel=1, num_speakers=2)
    assert diarize_file(build_pipeline(pyannet(), channel_config), stereo, uri="mono") == expected
    assert diarize_file(pipeline, stereo, channel=0, uri="mono", num_speakers=2) != expected  # noise differs


def test_44k_input_is_resampled(tmp_path, sample):
    high = torchaudio.functional.resample(torch.from_numpy(sample), 16000, 44100).numpy()
    path = write_audio(tmp_path / "sample44k.wav", high, 44100)
    waveform = load_audio(path, 16000)[0].numpy()
    assert waveform.shape == sample.shape
    assert np.corrcoef(waveform, sample)[0, 1] > 0.99
    diarization = diarize_file(build_pipeline(pyannet(), SMOKE), path, num_speakers=2)
    assert len(diarization.labels()) == 2 and diarization.get_timeline().extent().end <= 30.0


def test_window_and_step_can_differ_from_the_training_chunk(tmp_path, sample):
    config = dataclasses.replace(SMOKE, window=5.0, step_ratio=0.2)
    with pytest.warns(UserWarning, match="trained with 10s chunks"):
        pipeline = build_pipeline(pyannet(constant_class=1), config)
    segmentations = pipeline.get_segmentations({"waveform": torch.from_numpy(sample)[None], "sample_rate": 16000,
                                                "uri": "sample"})
    assert segmentations.sliding_window.duration == 5.0 and segmentations.sliding_window.step == 1.0
    assert segmentations.data.shape[0] == 26  # (30 - 5) / 1 + 1 chunks
    assert 29.95 < diarize_file(pipeline, SAMPLE).get_timeline().support()[0].end <= 30.0


def test_median_filter_removes_short_blips_per_chunk():
    data = np.zeros((2, 20, 2), dtype=np.float32)
    data[0, 5, 0] = 1.0  # one-frame blip: removed
    data[0, 10:15, 1] = 1.0  # five frames: kept
    data[1, :, 0] = 1.0
    data[1, 7, 0] = 0.0  # one-frame hole: filled
    original = data.copy()
    filtered = median_filter_frames(SlidingWindowFeature(data, SlidingWindow(duration=10.0, step=1.0)), 3)
    assert filtered.data is data and data.dtype == np.float32  # in place: no second (chunk, frame, speaker) array
    assert data[0, :, 0].sum() == 0
    assert np.array_equal(data[0, :, 1], original[0, :, 1])
    assert data[1, :, 0].sum() == 20


def test_median_filter_is_upstreams_eleven_frame_filter():
    binary = (np.random.default_rng(0).random((6, 50, 3)) < 0.4).astype(np.float32)
    binary[:, :4, 0] = 1.0  # a run at the chunk edge, where reflecting and repeating the edge differ
    upstream = median_filter(binary, size=(1, 11, 1), mode="reflect")  # upstream DiariZen's call, whole array
    ours = median_filter_frames(SlidingWindowFeature(binary.copy(), SlidingWindow(duration=8.0, step=0.8)), 11)
    assert np.array_equal(ours.data, upstream)
    assert not np.array_equal(upstream, median_filter(binary, size=(1, 11, 1), mode="nearest"))


def write_plda(folder: Path, dimension: int, lda_dimension: int = 16, seed: int = 0) -> Path:
    """A random PLDA in pyannote.audio's VBx format (xvec_transform.npz + plda.npz)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    lda, _ = np.linalg.qr(rng.normal(size=(dimension, lda_dimension)))
    np.savez(folder / "xvec_transform.npz", mean1=rng.normal(size=dimension), mean2=np.zeros(lda_dimension), lda=lda)
    np.savez(
        folder / "plda.npz",
        mu=np.zeros(lda_dimension),
        tr=np.eye(lda_dimension) + 0.1 * rng.normal(size=(lda_dimension, lda_dimension)),
        psi=np.linspace(5.0, 0.5, lda_dimension),
    )
    return folder


def test_vbx_with_a_local_plda(tmp_path, sample, no_network_log):
    speech = write_audio(tmp_path / "speech.wav", sample[: 15 * 16000], 16000)
    dimension = FbankStatsEmbedding().dimension
    folder = write_plda(tmp_path / "plda", dimension)
    assert load_plda(folder)(np.random.default_rng(1).normal(size=(5, dimension))).shape == (5, 16)
    config = dataclasses.replace(SMOKE, clustering="vbx", plda=str(folder))
    pipeline = build_pipeline(pyannet(), config)
    diarization = diarize_file(pipeline, speech)
    assert 1 <= len(diarization.labels()) <= 3 and diarization.get_timeline().extent().end <= 15.0
    assert len(diarize_file(pipeline, speech, num_speakers=2).labels()) == 2

    wrong = write_plda(tmp_path / "plda256", 256)
    config = dataclasses.replace(SMOKE, clustering="vbx", plda=str(wrong))
    with pytest.raises(InputError, match="PLDA expects 256-dimensional speaker embeddings, the embedding model gives"):
        build_pipeline(pyannet(), config)


def test_missing_embedding_asset_is_refused_with_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(AssetNotFoundError, match="wespeaker-resnet34-lm") as error:
        build_pipeline(pyannet(), DiarizationConfig(), checkpoint_dir=tmp_path)
    assert error.value.fix and str(tmp_path) in str(error.value)


def test_local_wespeaker_folder_loads_offline_and_runs(tmp_path, sample, no_network_log):
    torch.manual_seed(0)
    wespeaker = WeSpeakerResNet34()
    wespeaker.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0
    )
    checkpoint = {"state_dict": wespeaker.state_dict(), "hyper_parameters": dict(wespeaker.hparams)}
    wespeaker.on_save_checkpoint(checkpoint)  # pyannote's own block: versions, architecture, specifications
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    folder = tmp_path / "wespeaker-resnet34-lm"
    folder.mkdir()
    torch.save(checkpoint, folder / "pytorch_model.bin")
    (folder / "config.yaml").write_text("model: pyannote.audio.models.embedding.WeSpeakerResNet34\n")

    loaded = load_embedding("wespeaker-resnet34-lm", checkpoint_dir=tmp_path)  # by asset name, from the store folder
    assert isinstance(loaded, WeSpeakerResNet34) and loaded.dimension == 256
    waveforms = torch.from_numpy(sample[: 2 * 16000])[None, None]
    with torch.inference_mode():
        assert torch.allclose(loaded(waveforms), wespeaker.eval()(waveforms), atol=1e-5)

    short = write_audio(tmp_path / "short.wav", sample[: 4 * 16000], 16000)
    config = DiarizationConfig(segmentation_batch_size=8, embedding_batch_size=8, embedding_exclude_overlap=False)
    # 4 s chunks: one chunk, three local speakers, three ResNet34 embeddings
    diarization = diarize_file(build_pipeline(pyannet(duration=4.0), config, checkpoint_dir=tmp_path), short)
    assert diarization.get_timeline().extent().end <= 4.0

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot load the speaker-embedding model"):
        load_embedding(tmp_path / "broken")


def test_wavlm_conformer_segmentation():
    from diarizen_lab.data.task import Task
    from diarizen_lab.models.wavlm_conformer import WavLMConformer

    torch.manual_seed(0)
    model = WavLMConformer(wavlm="random:wavlm_tiny", attention_in=32, ffn_hidden=64, num_heads=2, num_layers=1,
                           task=Task(chunk_size=8.0)).eval()
    diarization = diarize_file(build_pipeline(model, SMOKE), SAMPLE, max_speakers=3)
    assert 1 <= len(diarization.labels()) <= 3
    assert diarization.get_timeline().extent().end <= 30.0


def test_config_is_validated():
    with pytest.raises(DiarizenLabError, match="clustering must be one of ahc, vbx"):
        DiarizationConfig(clustering="kmeans")
    with pytest.raises(DiarizenLabError, match="odd number of frames"):
        DiarizationConfig(median_filter=4)
    with pytest.raises(DiarizenLabError, match=r"min_speakers \(3\) > max_speakers \(2\)"):
        DiarizationConfig(min_speakers=3, max_speakers=2)
    with pytest.raises(DiarizenLabError, match="pyannote.audio Model"):
        build_pipeline(torch.nn.Linear(1, 1), SMOKE)


def test_fbank_stats_embedding_weights_and_empty_masks(sample):
    model = FbankStatsEmbedding()
    waveforms = torch.from_numpy(np.stack([sample[:32000], sample[32000:64000]]))[:, None]
    weights = torch.zeros(2, 50)
    weights[0, :25] = 1.0
    embeddings = model(waveforms, weights=weights)
    assert embeddings.shape == (2, 80)
    assert torch.isnan(embeddings[1]).all()  # nobody speaks: no embedding (pyannote's clustering skips it)
    first_half = model(waveforms[:1, :, :16000])
    assert torch.allclose(embeddings[0], first_half[0], atol=0.05)
    with pytest.raises(ValueError, match="at least 400 samples"):
        model(waveforms[:, :, :100])
