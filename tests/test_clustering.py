"""Clustering in linear memory: our subclasses of pyannote's AHC and VBx give pyannote's (scipy's) labels."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
import torch
from pyannote.audio.pipelines import clustering as pyannote_clustering
from pyannote.core import SlidingWindow, SlidingWindowFeature
from scipy.cluster.hierarchy import fcluster, linkage

from diarizen_lab.evaluation import clustering
from diarizen_lab.evaluation.clustering import AgglomerativeClustering, VBxClustering, memory_saving_linkage
from diarizen_lab.evaluation.pipeline import build_pipeline, load_plda
from test_pipeline import SAMPLE, SMOKE, pyannet, write_plda


def same_partition(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two labellings group the items identically (whatever the cluster numbers)."""
    pairs = set(zip(first.ravel().tolist(), second.ravel().tolist()))
    return len(pairs) == len(np.unique(first)) == len(np.unique(second))


def ahc(cls, method: str = "centroid", threshold: float = 0.6, min_cluster_size: int = 3, **kwargs):
    clustering = cls(metric="cosine", **kwargs)
    clustering.instantiate({"method": method, "threshold": threshold, "min_cluster_size": min_cluster_size})
    return clustering


@pytest.fixture(scope="module")
def pipeline_run():
    """Embeddings and binarized segmentations of a real pipeline run: sample.wav, 10 s windows, 0.1 step."""
    pipeline = build_pipeline(pyannet(), dataclasses.replace(SMOKE, median_filter=0))
    import soundfile as sf

    samples, rate = sf.read(SAMPLE, dtype="float32")
    file = {"waveform": torch.from_numpy(samples)[None], "sample_rate": rate, "uri": "sample"}
    segmentations = pipeline.get_segmentations(file)
    embeddings = pipeline.get_embeddings(file, segmentations, exclude_overlap=True)
    return embeddings, segmentations


def clustered_embeddings(
    num_speakers: int, per_speaker: int, dimension: int = 32, seed: int = 0, spread: float = 0.3
) -> np.ndarray:
    """``(chunk, 1, dimension)`` embeddings around ``num_speakers`` random centres, each chunk one speaker."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_speakers, dimension))
    points = centres[np.repeat(np.arange(num_speakers), per_speaker)] + spread * rng.normal(
        size=(num_speakers * per_speaker, dimension)
    )
    return rng.permutation(points).astype(np.float32)[:, None, :]


def everyone_alone(num_chunks: int, num_frames: int = 10) -> SlidingWindowFeature:
    return SlidingWindowFeature(np.ones((num_chunks, num_frames, 1), dtype=np.float32), SlidingWindow(8.0, 0.8))


@pytest.mark.parametrize("method", ["centroid", "median", "ward"])
def test_ahc_labels_equal_pyannotes_on_a_real_pipeline_run(pipeline_run, method, monkeypatch):
    embeddings, segmentations = pipeline_run
    monkeypatch.setattr(clustering, "SCIPY_DISTANCES_BUDGET", 0)  # fastcluster even for these few embeddings
    for forced in (None, 2):  # forcing a number of clusters walks the dendrogram's merge order too
        # fbank-stats embeddings of sample.wav lie within 0.2 of each other: a low threshold splits them
        ours = ahc(AgglomerativeClustering, method, threshold=0.04, min_cluster_size=2, min_active_ratio=0.2)(
            embeddings.copy(), segmentations, num_clusters=forced)[0]
        theirs = ahc(pyannote_clustering.AgglomerativeClustering, method, threshold=0.04, min_cluster_size=2)(
            embeddings.copy(), segmentations, num_clusters=forced)[0]
        assert np.array_equal(ours, theirs)
        assert len(np.unique(theirs)) > 1


def test_vbx_labels_equal_pyannotes_on_a_real_pipeline_run(pipeline_run, tmp_path, monkeypatch):
    monkeypatch.setattr(clustering, "SCIPY_DISTANCES_BUDGET", 0)
    embeddings, segmentations = pipeline_run
    plda = load_plda(write_plda(tmp_path / "plda", embeddings.shape[-1]))
    parameters = {"threshold": 0.3, "Fa": 0.07, "Fb": 0.8}
    ours = VBxClustering(plda, min_active_ratio=0.2)
    theirs = pyannote_clustering.VBxClustering(plda)
    ours.instantiate(parameters)
    theirs.instantiate(parameters)
    assert np.array_equal(ours(embeddings, segmentations, min_clusters=1, max_clusters=20)[0],
                          theirs(embeddings, segmentations, min_clusters=1, max_clusters=20)[0])


def test_linkage_matches_scipy_and_ties_keep_the_partition(monkeypatch):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(400, 16))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    monkeypatch.setattr(clustering, "SCIPY_DISTANCES_BUDGET", 0)  # fastcluster even for these few embeddings
    for method in ("centroid", "median", "ward"):
        ours, theirs = memory_saving_linkage(points, method), linkage(points, method, "euclidean")
        assert np.array_equal(ours[:, :2], theirs[:, :2]) and np.allclose(ours[:, 2:], theirs[:, 2:], atol=1e-12)
    duplicates = np.repeat(points[:60], 5, axis=0)[rng.permutation(300)]  # every embedding five times: tied merges
    for method in ("centroid", "median", "ward"):
        for threshold in (0.3, 0.6, 1.0):
            ours = fcluster(memory_saving_linkage(duplicates, method), threshold, "distance")
            theirs = fcluster(linkage(duplicates, method, "euclidean"), threshold, "distance")
            assert same_partition(ours, theirs)
    assert memory_saving_linkage(points, "average").shape == (399, 4)  # other methods: scipy's own


def test_duplicated_embeddings_give_pyannotes_partition(monkeypatch):
    monkeypatch.setattr(clustering, "SCIPY_DISTANCES_BUDGET", 0)
    embeddings = clustered_embeddings(num_speakers=4, per_speaker=40)
    embeddings = np.concatenate([embeddings, embeddings, embeddings[:50]])  # looped audio: exact duplicates
    segmentations = everyone_alone(len(embeddings))
    ours = ahc(AgglomerativeClustering, min_active_ratio=0.2)(embeddings.copy(), segmentations)[0]
    theirs = ahc(pyannote_clustering.AgglomerativeClustering)(embeddings.copy(), segmentations)[0]
    assert same_partition(ours, theirs) and len(np.unique(ours)) == 4


def test_clustering_memory_is_linear_in_the_number_of_embeddings():
    embeddings = clustered_embeddings(num_speakers=5, per_speaker=1200, dimension=16)  # 6,000 embeddings
    segmentations = everyone_alone(len(embeddings), num_frames=2)

    def peak_mib(clustering) -> float:
        tracemalloc.start()
        clustering(embeddings.copy(), segmentations)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak / 2**20

    condensed_mib = len(embeddings) * (len(embeddings) - 1) / 2 * 8 / 2**20  # 137 MiB of pairwise distances
    assert peak_mib(ahc(pyannote_clustering.AgglomerativeClustering)) > condensed_mib
    assert peak_mib(ahc(AgglomerativeClustering)) < condensed_mib / 10


def test_min_active_ratio_decides_which_embeddings_are_clustered():
    binary = np.zeros((1, 100, 2), dtype=np.float32)
    binary[0, :15, 0] = 1.0  # speaker 0 alone on 15 % of the chunk
    binary[0, 10:60, 1] = 1.0  # speaker 1 alone on 45 %
    segmentations = SlidingWindowFeature(binary, SlidingWindow(8.0, 0.8))
    embeddings = np.ones((1, 2, 4), dtype=np.float32)
    kept = {ratio: AgglomerativeClustering(min_active_ratio=ratio).filter_embeddings(embeddings, segmentations)[2]
            for ratio in (0.1, 0.2)}
    assert kept[0.1].tolist() == [0, 1]  # upstream DiariZen's 10 %: both
    assert kept[0.2].tolist() == [1]  # pyannote.audio's fixed 20 %: speaker 0 is dropped


def vbx_on_three_speakers(tmp_path, spread: float = 0.3, threshold: float = 0.6, **settings) -> np.ndarray:
    """VBx's hard clusters of 90 embeddings around three centres (a random 16-dimensional PLDA)."""
    embeddings = clustered_embeddings(num_speakers=3, per_speaker=30, dimension=16, seed=1, spread=spread)
    plda = load_plda(write_plda(tmp_path / "plda", 16, seed=1))
    clustering = (VBxClustering if settings else pyannote_clustering.VBxClustering)(plda, **settings)
    clustering.instantiate({"threshold": threshold, "Fa": 0.07, "Fb": 0.8})
    return clustering(embeddings, everyone_alone(len(embeddings)), min_clusters=1, max_clusters=20)[0]


def test_vbx_ahc_criterion_is_used(tmp_path):
    assert len(np.unique(vbx_on_three_speakers(tmp_path / "a", ahc_criterion="distance"))) > 1
    one_initial_cluster = vbx_on_three_speakers(tmp_path / "b", ahc_criterion="maxclust", threshold=1)
    assert len(np.unique(one_initial_cluster)) == 1  # VBx never adds a cluster to its AHC initialisation
    with pytest.raises(ValueError, match="ahc_criterion must be one of distance, maxclust"):
        VBxClustering(None, ahc_criterion="inconsistent")


def test_vbx_max_iters_is_used(tmp_path):
    pyannotes = vbx_on_three_speakers(tmp_path / "a", spread=1.0)  # pyannote fixes 20 iterations
    assert np.array_equal(vbx_on_three_speakers(tmp_path / "b", spread=1.0, max_iters=20), pyannotes)
    assert len(np.unique(pyannotes)) == 1
    assert len(np.unique(vbx_on_three_speakers(tmp_path / "c", spread=1.0, max_iters=1))) > 1  # not converged


def test_substitution_is_confined_to_its_thread_and_restored_on_errors():
    import threading

    original, seen = pyannote_clustering.linkage, {}

    def other_thread():
        seen["linkage"] = pyannote_clustering.linkage(np.zeros((2, 1)))

    with pytest.raises(ZeroDivisionError):
        with clustering.calls_in_pyannote_clustering(linkage=lambda *args, **kwargs: "ours"):
            assert pyannote_clustering.linkage(np.zeros((2, 1))) == "ours"
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
            1 / 0
    assert pyannote_clustering.linkage is original
    assert seen["linkage"].shape == (1, 4)  # scipy's dendrogram, not ours
