"""Speaker diarization with pyannote.audio's ``SpeakerDiarization`` pipeline, built from local objects only.

:func:`build_pipeline` takes a segmentation model object (ours or any pyannote ``Model``) and a
:class:`DiarizationConfig`; the speaker-embedding model and the PLDA come from the offline store or a local
path (never a hub id). :func:`diarize_file` reads one recording and returns its diarization.

What this adds to pyannote's pipeline: a segmentation window other than the model's training chunk, an optional
median filter over the frames of each chunk's segmentation, channel selection and resampling of the input, and
an output clipped to the recording (pyannote zero-pads the last chunk, and a model may detect speech there).

Memory (``benchmarks/bench_long_audio.py``): the peak is set by the segmentation model's activations (on CPU,
WavLM's convolutional front end takes the windows one at a time, so a batch of 32 Base+ windows peaks about
1 GiB above a single window) plus the float32 waveform (0.2 GiB per hour); pyannote's per-chunk arrays are
small. Its agglomerative clustering, however, builds the condensed distance matrix of every kept (chunk,
speaker) embedding, which grows with the square of the number of windows: with ``step_ratio = 0.1`` a one-hour
meeting has 4,500 windows, hence up to 18,000 embeddings, and scipy's linkage peaks 0.6 GiB higher for 9,000
embeddings, 2.4 GiB for 18,000.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import torch
from pyannote.audio import Inference, Model
from pyannote.audio.core.plda import PLDA
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.audio.pipelines.clustering import AgglomerativeClustering
from pyannote.core import Annotation, Segment, SlidingWindowFeature
from scipy.ndimage import median_filter

from diarizen_lab.data.frames import require_receptive_field
from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.evaluation.audio import load_audio
from diarizen_lab.evaluation.embedding import DEFAULT_EMBEDDING, load_embedding

CLUSTERING = {"ahc": "AgglomerativeClustering", "vbx": "VBxClustering"}
PLDA_FILES = ("xvec_transform.npz", "plda.npz")


@dataclasses.dataclass
class DiarizationConfig:
    """Settings of the diarization pipeline."""

    embedding: str = DEFAULT_EMBEDDING
    """Speaker-embedding model: a store asset name, a local pyannote model folder, or ``fbank-stats`` (tests only)."""
    clustering: str = "ahc"
    """``ahc`` (agglomerative, pyannote's AgglomerativeClustering) or ``vbx`` (AHC then VBx, needs ``plda``)."""
    plda: str = "plda"
    """PLDA for VBx: a store asset name or a folder with ``xvec_transform.npz`` and ``plda.npz``."""
    window: float | None = None
    """Segmentation window in seconds; ``None`` uses the model's training chunk duration."""
    step_ratio: float = 0.1
    """Step between segmentation windows, as a fraction of the window."""
    segmentation_batch_size: int = 32
    """Windows per segmentation forward pass (on CPU, 32 Base+ windows peak about 1 GiB above one window)."""
    embedding_batch_size: int = 32
    embedding_exclude_overlap: bool = True
    """Extract each speaker's embedding from the frames where it speaks alone (when there are enough of them)."""
    median_filter: int = 0
    """Median filter over the frames of each chunk's segmentation: an odd number of frames, or 0 for none."""
    segmentation_threshold: float = 0.5
    """Activation threshold, for multi-label (non-powerset) segmentation models only."""
    min_duration_off: float = 0.0
    """Fill same-speaker gaps shorter than this (seconds)."""
    ahc_method: str = "centroid"
    ahc_threshold: float = 0.7
    min_cluster_size: int = 12
    vbx_threshold: float = 0.6
    """Threshold of the AHC that initialises VBx."""
    vbx_fa: float = 0.07
    vbx_fb: float = 0.8
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    channel: int | None = None
    """Audio channel to diarize (0-based); ``None`` averages all channels."""

    def __post_init__(self) -> None:
        if self.clustering not in CLUSTERING:
            raise DiarizenLabError(f"clustering must be one of {', '.join(CLUSTERING)}, got {self.clustering!r}")
        if not 0 < self.step_ratio <= 1:
            raise DiarizenLabError(f"step_ratio must be in (0, 1], got {self.step_ratio}")
        if self.window is not None and self.window <= 0:
            raise DiarizenLabError(f"window must be a positive number of seconds, got {self.window}")
        if self.median_filter < 0 or (self.median_filter > 1 and self.median_filter % 2 == 0):
            raise DiarizenLabError(
                f"median_filter must be 0 (off) or an odd number of frames, got {self.median_filter}"
            )
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DiarizenLabError(f"{name} must be >= 1, got {value}")
        if self.min_speakers is not None and self.max_speakers is not None and self.min_speakers > self.max_speakers:
            raise DiarizenLabError(f"min_speakers ({self.min_speakers}) > max_speakers ({self.max_speakers})")
        check_ranges(self)


def check_ranges(config: DiarizationConfig) -> None:
    """The settings pyannote.audio would only refuse mid-run (or never): batch sizes, thresholds, durations,
    the AHC linkage (one of pyannote's own choices)."""
    methods = AgglomerativeClustering().method.choices
    finite = math.isfinite
    checks = [
        ("ahc_method", config.ahc_method in methods, f"one of {', '.join(methods)}"),
        ("segmentation_batch_size", config.segmentation_batch_size >= 1, ">= 1"),
        ("embedding_batch_size", config.embedding_batch_size >= 1, ">= 1"),
        ("min_cluster_size", config.min_cluster_size >= 1, ">= 1"),
        ("segmentation_threshold", 0.0 <= config.segmentation_threshold <= 1.0, "in [0, 1]"),
        ("min_duration_off", finite(config.min_duration_off) and config.min_duration_off >= 0, ">= 0 seconds"),
        ("ahc_threshold", finite(config.ahc_threshold), "a finite number"),
        ("vbx_threshold", finite(config.vbx_threshold), "a finite number"),
        ("vbx_fa", finite(config.vbx_fa) and config.vbx_fa > 0, "> 0"),
        ("vbx_fb", finite(config.vbx_fb) and config.vbx_fb > 0, "> 0"),
        ("channel", config.channel is None or config.channel >= 0, ">= 0 (0-based)"),
        ("window", config.window is None or finite(config.window), "a finite number of seconds"),
    ]
    for name, valid, requirement in checks:
        if not valid:
            raise DiarizenLabError(f"{name} must be {requirement}, got {getattr(config, name)!r}")


class UnusedPLDA(PLDA):
    """Placeholder for the PLDA that pyannote.audio 4.0's ``SpeakerDiarization`` requires even when its
    clustering (AHC) never uses one; without it the pipeline would fetch its default PLDA from the hub."""

    def __init__(self) -> None:  # nothing to load
        pass

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        raise RuntimeError("this pipeline's clustering does not use a PLDA")


class DiarizationPipeline(SpeakerDiarization):
    """pyannote.audio's ``SpeakerDiarization`` with a configurable segmentation window and median filtering.

    Build it with :func:`build_pipeline`, which also instantiates the hyper-parameters from the config.
    """

    def __init__(self, segmentation: Model, embedding: Model, config: DiarizationConfig, plda: PLDA | None = None):
        super().__init__(
            segmentation=segmentation,
            segmentation_step=config.step_ratio,
            embedding=embedding,
            embedding_exclude_overlap=config.embedding_exclude_overlap,
            plda=plda if plda is not None else UnusedPLDA(),
            clustering=CLUSTERING[config.clustering],
            embedding_batch_size=config.embedding_batch_size,
            segmentation_batch_size=config.segmentation_batch_size,
        )
        self.config = config
        window = config.window or segmentation.specifications.duration
        require_receptive_field(segmentation, window, "[diarization] window")
        if window != segmentation.specifications.duration:
            self._segmentation = Inference(
                segmentation,
                duration=window,
                step=config.step_ratio * window,
                skip_aggregation=True,
                batch_size=config.segmentation_batch_size,
            )

    def get_segmentations(self, file, hook=None) -> SlidingWindowFeature:
        segmentations = super().get_segmentations(file, hook=hook)
        if self.config.median_filter > 1:
            segmentations = median_filter_frames(segmentations, self.config.median_filter)
        return segmentations


def median_filter_frames(segmentations: SlidingWindowFeature, size: int) -> SlidingWindowFeature:
    """Median-filter ``(chunk, frame, speaker)`` scores along frames, chunk by chunk, into a new array of the
    same dtype (no float64 copy)."""
    filtered = np.empty_like(segmentations.data)
    for chunk, scores in enumerate(segmentations.data):
        filtered[chunk] = median_filter(scores, size=(size, 1), mode="nearest")
    return SlidingWindowFeature(filtered, segmentations.sliding_window)


def load_plda(
    name_or_path: str | os.PathLike, checkpoint_dir: str | os.PathLike | None = None, dimension: int | None = None
) -> PLDA:
    """The PLDA of a store asset or local folder (``xvec_transform.npz`` + ``plda.npz``), checked against the
    speaker-embedding ``dimension`` when given."""
    from diarizen_lab.store import resolve_asset

    folder = resolve_asset(name_or_path, checkpoint_dir)
    missing = [name for name in PLDA_FILES if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"not a PLDA folder: {', '.join(missing)} missing", path=folder,
            fix="pass a folder holding xvec_transform.npz and plda.npz (pyannote.audio's VBx PLDA format)",
        )
    if dimension is not None:
        with np.load(folder / "xvec_transform.npz") as transform:
            expected = transform["mean1"].shape[-1]
        if expected != dimension:
            raise InputError(
                f"PLDA expects {expected}-dimensional speaker embeddings, the embedding model gives {dimension}",
                path=folder, fix="use the PLDA trained with this speaker-embedding model",
            )
    return PLDA.from_pretrained(folder)


def build_pipeline(
    segmentation: Model,
    config: DiarizationConfig | None = None,
    *,
    embedding: Model | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> DiarizationPipeline:
    """A ready-to-run diarization pipeline around ``segmentation``.

    ``embedding`` overrides ``config.embedding`` with an already loaded model; assets are looked up in
    ``checkpoint_dir`` (default: the store's default folder).
    """
    config = config or DiarizationConfig()
    if not isinstance(segmentation, Model):
        raise DiarizenLabError(
            f"the segmentation model must be a pyannote.audio Model, got {type(segmentation).__name__}"
        )
    embedding = embedding if embedding is not None else load_embedding(config.embedding, checkpoint_dir)
    plda = load_plda(config.plda, checkpoint_dir, embedding.dimension) if config.clustering == "vbx" else None
    pipeline = DiarizationPipeline(segmentation, embedding, config, plda=plda)
    segmentation_parameters = {"min_duration_off": config.min_duration_off}
    if not segmentation.specifications.powerset:
        segmentation_parameters["threshold"] = config.segmentation_threshold
    if config.clustering == "vbx":
        clustering_parameters = {"threshold": config.vbx_threshold, "Fa": config.vbx_fa, "Fb": config.vbx_fb}
    else:
        clustering_parameters = {
            "method": config.ahc_method,
            "threshold": config.ahc_threshold,
            "min_cluster_size": config.min_cluster_size,
        }
    pipeline.instantiate({"segmentation": segmentation_parameters, "clustering": clustering_parameters})
    if device is not None:
        pipeline.to(torch.device(device))
    return pipeline


def diarize_file(
    pipeline: DiarizationPipeline,
    audio: str | os.PathLike,
    *,
    uri: str | None = None,
    channel: int | None = None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> Annotation:
    """Diarize one recording; arguments left to ``None`` fall back to ``pipeline.config``.

    Speakers are labelled ``SPEAKER_00``, ``SPEAKER_01``, ...; the result never extends past the end of the audio.
    """
    config = pipeline.config
    audio = Path(audio)
    sample_rate = pipeline.segmentation_model.audio.sample_rate
    waveform = load_audio(audio, sample_rate, channel if channel is not None else config.channel)
    uri = uri or audio.stem
    output = pipeline(
        {"waveform": waveform, "sample_rate": sample_rate, "uri": uri},
        num_speakers=num_speakers or config.num_speakers,
        min_speakers=min_speakers or config.min_speakers,
        max_speakers=max_speakers or config.max_speakers,
    )
    duration = waveform.shape[-1] / sample_rate
    diarization = output.speaker_diarization.crop(Segment(0.0, duration), mode="intersection")
    diarization.uri = uri
    return diarization
