"""DiariZen's inference settings in DiarizationConfig, and the pipeline steps we extend equal pyannote's."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from pyannote.audio import Inference
from pyannote.audio.models.embedding import WeSpeakerResNet34
from pyannote.audio.pipelines import SpeakerDiarization

from diarizen_lab.evaluation.clustering import AgglomerativeClustering, VBxClustering
from diarizen_lab.evaluation.pipeline import DiarizationConfig, SegmentationInference, build_pipeline
from test_pipeline import SAMPLE, SMOKE, pyannet, write_plda

UPSTREAM_CONFIG = Path(__file__).resolve().parents[1].parent / "shared" / "upstream-fixtures" / "base_tiny" / "config.toml"
UPSTREAM_CLI_ONLY = {"min_cluster_size": 13}
"""Upstream's AHC min_cluster_size lives in its inference command line's defaults, not in released configs."""


@pytest.fixture(scope="module")
def sample_file() -> dict:
    samples, rate = sf.read(SAMPLE, dtype="float32")
    return {"waveform": torch.from_numpy(samples[: 8 * rate])[None], "sample_rate": rate, "uri": "sample"}


def test_defaults_are_upstreams_inference_defaults():
    if not UPSTREAM_CONFIG.is_file():
        pytest.skip(f"upstream fixtures not found at {UPSTREAM_CONFIG} (../shared/upstream-fixtures)")
    upstream = tomllib.loads(UPSTREAM_CONFIG.read_text())
    inference, clustering = upstream["inference"]["args"], upstream["clustering"]["args"]
    ours = DiarizationConfig()
    assert ours.step_ratio == inference["segmentation_step"]
    assert (ours.median_filter == 11) == inference["apply_median_filtering"]
    assert ours.embedding_batch_size == ours.segmentation_batch_size == inference["batch_size"]
    assert (ours.min_speakers, ours.max_speakers) == (clustering["min_speakers"], clustering["max_speakers"])
    assert ours.vbx_ahc_criterion == clustering["ahc_criterion"] and ours.ahc_threshold == clustering["ahc_threshold"]
    assert (ours.vbx_fa, ours.vbx_fb) == (clustering["Fa"], clustering["Fb"])
    assert (ours.vbx_lda_dim, ours.vbx_max_iters) == (clustering["lda_dim"], clustering["max_iters"])
    assert ours.min_cluster_size == UPSTREAM_CLI_ONLY["min_cluster_size"] and ours.min_active_ratio == 0.1
    assert ours.window is None  # the model's own chunk, as upstream's seg_duration (= the chunk it was trained on)


def test_settings_reach_pyannotes_clustering(tmp_path):
    config = dataclasses.replace(SMOKE, min_active_ratio=0.3, ahc_threshold=0.45, min_cluster_size=5)
    pipeline = build_pipeline(pyannet(), config)
    assert isinstance(pipeline.clustering, AgglomerativeClustering)
    assert (pipeline.clustering.min_active_ratio, pipeline.clustering.threshold) == (0.3, 0.45)
    assert pipeline.clustering.min_cluster_size == 5

    plda = write_plda(tmp_path / "plda", 80)
    config = dataclasses.replace(SMOKE, clustering="vbx", plda=str(plda), vbx_lda_dim=8, vbx_max_iters=7,
                                 vbx_ahc_criterion="maxclust", ahc_threshold=3, vbx_fa=0.2, vbx_fb=2.0)
    pipeline = build_pipeline(pyannet(), config)
    vbx = pipeline.clustering
    assert isinstance(vbx, VBxClustering) and (vbx.max_iters, vbx.ahc_criterion) == (7, "maxclust")
    assert (vbx.threshold, vbx.Fa, vbx.Fb) == (3, 0.2, 2.0)
    assert vbx.plda.phi.shape == (8,) and vbx.plda(np.ones((2, 80))).shape == (2, 8)  # lda_dim of the 16 dims


def test_new_settings_are_validated():
    with pytest.raises(Exception, match="vbx_ahc_criterion must be one of distance, maxclust"):
        DiarizationConfig(vbx_ahc_criterion="inconsistent")
    with pytest.raises(Exception, match=r"min_active_ratio must be in \[0, 1\]"):
        DiarizationConfig(min_active_ratio=1.5)
    with pytest.raises(Exception, match="vbx_max_iters must be >= 1"):
        DiarizationConfig(vbx_max_iters=0)


@pytest.mark.parametrize("embedding", ["wespeaker", "fbank-stats"])
def test_embeddings_equal_pyannotes_with_one_pass_per_window(sample_file, embedding):
    torch.manual_seed(0)
    model = WeSpeakerResNet34().eval() if embedding == "wespeaker" else None
    config = dataclasses.replace(SMOKE, embedding="fbank-stats", step_ratio=0.5, embedding_batch_size=6)
    pipeline = build_pipeline(pyannet(duration=4.0), config, embedding=model)  # 3 chunks, 3 local speakers
    segmentations = pipeline.get_segmentations(sample_file)
    ours = pipeline.get_embeddings(sample_file, segmentations, exclude_overlap=True)
    theirs = SpeakerDiarization.get_embeddings(pipeline, sample_file, segmentations, exclude_overlap=True)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (3, 3, pipeline._embedding.dimension)
    assert np.allclose(ours, theirs, atol=1e-5, equal_nan=True)


def test_segmentation_batches_fill_one_array_with_pyannotes_values(sample_file, monkeypatch):
    waveform = sample_file["waveform"][:, : 16000 * 7 + 1234]  # a last, zero-padded chunk
    file = {**sample_file, "waveform": waveform}
    pipeline = build_pipeline(pyannet(duration=2.0), dataclasses.replace(SMOKE, segmentation_batch_size=4))
    assert isinstance(pipeline._segmentation, SegmentationInference)
    batches = []
    original = SegmentationInference.infer

    def recorded(self, chunks):
        batches.append(original(self, chunks))
        return batches[-1]

    monkeypatch.setattr(SegmentationInference, "infer", recorded)
    inference = pipeline._segmentation
    ours = inference(file)
    theirs = Inference(inference.model, duration=inference.duration, step=inference.step, skip_aggregation=True,
                       batch_size=4)(file)
    assert ours.data.shape == theirs.data.shape == (27, 115, 3) and len(batches) == 8  # 26 chunks + the last
    assert np.array_equal(ours.data, theirs.data)
    assert all(batch.base is batches[0].base is not None for batch in batches)  # views of one array
    assert inference._outputs is None  # released with the recording


def test_resnet_frames_are_computed_one_window_at_a_time_on_cpu(sample_file, monkeypatch):
    torch.manual_seed(0)
    model = WeSpeakerResNet34().eval()
    config = dataclasses.replace(SMOKE, embedding="fbank-stats", step_ratio=0.5, embedding_batch_size=6)
    pipeline = build_pipeline(pyannet(duration=4.0), config, embedding=model)
    segmentations = pipeline.get_segmentations(sample_file)
    batch_sizes = []
    forward_frames = model.forward_frames
    monkeypatch.setattr(model, "forward_frames", lambda w: batch_sizes.append(len(w)) or forward_frames(w))
    pipeline.get_embeddings(sample_file, segmentations, exclude_overlap=True)
    assert batch_sizes == [1, 1, 1]  # 3 windows in 2 batches (2 windows of 3 local speakers per batch)


def test_float32_reconstruction_equals_pyannotes(sample_file):
    pipeline = build_pipeline(pyannet(), SMOKE)
    segmentations = pipeline.get_segmentations(sample_file)
    count = pipeline.speaker_count(segmentations, pipeline._segmentation.model.receptive_field, warm_up=(0.0, 0.0))
    hard_clusters = np.array([[0, 1, -2]] * len(segmentations.data), dtype=np.int8)
    hard_clusters[0] = [1, 1, 0]  # two local speakers in one cluster: the maximum of their activities
    ours = pipeline.reconstruct(segmentations, hard_clusters, count)
    theirs = SpeakerDiarization.reconstruct(pipeline, segmentations, hard_clusters, count)
    assert np.array_equal(ours.data, theirs.data) and ours.data.any()


def test_removed_vbx_threshold_names_its_replacement(tmp_path):
    from diarizen_lab.config import load_config
    from diarizen_lab.errors import InputError

    config = tmp_path / "old.toml"
    config.write_text('[diarization]\nclustering = "vbx"\nvbx_threshold = 0.6\n')
    with pytest.raises(InputError) as raised:
        load_config(config, {"diarization": DiarizationConfig})
    message = str(raised.value)
    assert "old.toml" in message and "vbx_threshold" in message and "ahc_threshold" in message
    assert "\n" not in message
