"""Speaker diarization with pyannote.audio's ``SpeakerDiarization`` pipeline, built from local objects only.

:func:`build_pipeline` takes a segmentation model object (ours or any pyannote ``Model``) and a
:class:`DiarizationConfig`; the speaker-embedding model and the PLDA come from the offline store or a local
path (never a hub id). :func:`diarize_file` reads one recording and returns its diarization.

What this adds to pyannote's pipeline: DiariZen's inference settings (:class:`DiarizationConfig`; its defaults
are upstream's), a segmentation window other than the model's training chunk, upstream's median filter over
the frames of each chunk's segmentation, channel selection and resampling of the input, and an output clipped
to the recording (pyannote zero-pads the last chunk, and a model may detect speech there).

Memory at the defaults (step 0.1: 4,500 windows per hour, up to 4 embeddings each). Each stage holds arrays
linear in the recording length and in float32: the waveform (0.21 GiB per hour), the segmentations (written
batch by batch into one array per recording, :class:`SegmentationInference`, then median-filtered in place), the
embeddings (filled batch by batch into one preallocated array) and the clustered segmentations of the
reconstruction. Clustering is linear in the number of embeddings too: pyannote's agglomerative clustering (and
VBx's AHC initialisation) go through fastcluster's memory-saving linkage
(:mod:`diarizen_lab.evaluation.clustering`), where scipy's linkage would build the condensed matrix of all
pairwise distances (2.4 GiB more for the 18,000 embeddings of one hour). The rest of the peak is fixed: the
libraries (about 0.94 GiB), the models and one batch of their activations (on CPU one ResNet34 window, 0.09 GiB;
32 Base+ WavLM windows about 1 GiB above one window, where WavLM's convolutional front end takes the windows one
at a time). Measured at the defaults with ResNet34 and the tiny WavLM-Conformer on 2 CPU threads
(``benchmarks/bench_long_audio.py``, ``benchmarks/results.md``): peak RSS 1.47-1.53 GiB at 1 h and 2.26-2.27 GiB
at 4 h; 2.31 GiB at 4 h with a trained segmentation model (30,000 embeddings).

Time at the defaults: the WeSpeaker ResNet34 embeddings cost about as much as an s80 segmentation model and a
quarter of a Base+ one (one ResNet34 pass over each 8 s window, 0.2 s on 2 CPU threads, against 0.19 s for s80
and 0.83 s for Base+), computed once per window for all its local speakers; agglomerative clustering of N
embeddings takes O(N^2 D) time with the memory-saving linkage (45 s for 15,000 embeddings, 190 s for 30,000).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pyannote.audio import Inference, Model
from pyannote.audio.core.plda import PLDA
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.audio.pipelines.speaker_verification import PyannoteAudioPretrainedSpeakerEmbedding
from pyannote.core import Annotation, Segment, SlidingWindowFeature
from scipy.ndimage import median_filter

from diarizen_lab.data.frames import require_receptive_field
from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.evaluation.audio import load_audio
from diarizen_lab.evaluation.clustering import AHC_CRITERIA, AgglomerativeClustering, VBxClustering
from diarizen_lab.evaluation.embedding import DEFAULT_EMBEDDING, FBANK_STATS, load_embedding

CLUSTERING = {"ahc": "AgglomerativeClustering", "vbx": "VBxClustering"}
PLDA_FILES = ("xvec_transform.npz", "plda.npz")


@dataclasses.dataclass
class DiarizationConfig:
    """Settings of the diarization pipeline.

    The defaults are upstream DiariZen's inference defaults (median filter of 11 frames, 10 % of a chunk spoken
    alone, AHC distance 0.6, min/max speakers 1/20, VBx Fa 0.07, Fb 0.8, LDA dimension 128, 20 iterations, AHC
    min_cluster_size 13), except ``clustering``: upstream defaults to VBx, which needs a PLDA that an offline
    machine may not have; ``conf/diarization/wespeaker_vbx.toml`` is upstream's full setting.
    """

    RENAMED_KEYS: ClassVar[dict[str, str]] = {"vbx_threshold": "ahc_threshold"}
    """Keys of earlier diarization configs and the keys that replace them (a config using one is refused)."""

    embedding: str = DEFAULT_EMBEDDING
    """Speaker-embedding model: a store asset name, a local pyannote model folder, or ``fbank-stats`` (tests only)."""
    clustering: str = "ahc"
    """``ahc`` (agglomerative, pyannote's AgglomerativeClustering) or ``vbx`` (AHC then VBx, needs ``plda``)."""
    plda: str = "plda"
    """PLDA for VBx: a store asset name or a folder with ``xvec_transform.npz`` and ``plda.npz``."""
    window: float | None = None
    """Segmentation window in seconds (upstream ``seg_duration``); ``None`` uses the model's training chunk."""
    step_ratio: float = 0.1
    """Step between segmentation windows, as a fraction of the window (upstream ``segmentation_step``)."""
    segmentation_batch_size: int = 32
    """Windows per segmentation forward pass (on CPU, 32 Base+ windows peak about 1 GiB above one window)."""
    embedding_batch_size: int = 32
    """(window, local speaker) embeddings per speaker-embedding batch, as in pyannote.audio and upstream's
    ``batch_size``. A WeSpeaker ResNet computes each window's frame features once for all its local speakers, so a
    batch covers ``embedding_batch_size // local speakers`` windows (8 for 4 local speakers); on a GPU they go
    through the ResNet together, on CPU one at a time (faster there, and one window's activations instead of 8)."""
    embedding_exclude_overlap: bool = True
    """Extract each speaker's embedding from the frames where it speaks alone (when there are enough of them)."""
    min_active_ratio: float = 0.1
    """Fraction of a chunk's frames in which a local speaker must be the only one speaking for its embedding to
    take part in clustering (upstream DiariZen: 0.1; pyannote.audio 4 fixes 0.2)."""
    median_filter: int = 11
    """Median filter over the frames of each chunk's binarized segmentation, as upstream's
    ``apply_median_filtering`` (11 frames, reflected at the chunk edges): an odd number of frames, or 0 for none."""
    segmentation_threshold: float = 0.5
    """Activation threshold, for multi-label (non-powerset) segmentation models only."""
    min_duration_off: float = 0.0
    """Fill same-speaker gaps shorter than this (seconds)."""
    ahc_method: str = "centroid"
    """Linkage of the ``ahc`` clustering (VBx's initialisation is always centroid linkage)."""
    ahc_threshold: float = 0.6
    """Distance threshold of the agglomerative clustering on unit-normalized embeddings: of the ``ahc``
    clustering, and of the AHC that initialises VBx (upstream ``ahc_threshold``; with
    ``vbx_ahc_criterion = "maxclust"``, the number of initial VBx clusters)."""
    min_cluster_size: int = 13
    """``ahc`` only: clusters with fewer embeddings are merged into the closest larger one."""
    vbx_ahc_criterion: str = "distance"
    """How the AHC that initialises VBx is cut: ``distance`` (at ``ahc_threshold``) or ``maxclust``."""
    vbx_fa: float = 0.07
    vbx_fb: float = 0.8
    vbx_lda_dim: int = 128
    """PLDA dimensions VBx uses (all of them when the PLDA has fewer)."""
    vbx_max_iters: int = 20
    num_speakers: int | None = None
    min_speakers: int | None = 1
    max_speakers: int | None = 20
    channel: int | None = None
    """Audio channel to diarize (0-based); ``None`` averages all channels."""

    def store_assets(self) -> list[str]:
        """Names of the checkpoint-store assets this pipeline loads: the speaker-embedding model (unless
        ``fbank-stats``) and, for ``vbx``, the PLDA; a name that is an existing local path is no store asset."""
        names = [] if self.embedding == FBANK_STATS else [self.embedding]
        if self.clustering == "vbx":
            names.append(self.plda)
        return [name for name in names if not Path(name).exists()]

    def __post_init__(self) -> None:
        if self.clustering not in CLUSTERING:
            raise DiarizenLabError(f"clustering must be one of {', '.join(CLUSTERING)}, got {self.clustering!r}")
        if self.vbx_ahc_criterion not in AHC_CRITERIA:
            raise DiarizenLabError(
                f"vbx_ahc_criterion must be one of {', '.join(AHC_CRITERIA)}, got {self.vbx_ahc_criterion!r}"
            )
        if not 0 < self.step_ratio <= 1:
            raise DiarizenLabError(f"step_ratio must be in (0, 1], got {self.step_ratio}")
        if not 0 <= self.min_active_ratio <= 1:
            raise DiarizenLabError(f"min_active_ratio must be in [0, 1], got {self.min_active_ratio}")
        if self.window is not None and self.window <= 0:
            raise DiarizenLabError(f"window must be a positive number of seconds, got {self.window}")
        if self.median_filter < 0 or (self.median_filter > 1 and self.median_filter % 2 == 0):
            raise DiarizenLabError(
                f"median_filter must be 0 (off) or an odd number of frames, got {self.median_filter}"
            )
        for name in ("embedding_batch_size", "segmentation_batch_size", "vbx_lda_dim", "vbx_max_iters"):
            if getattr(self, name) < 1:
                raise DiarizenLabError(f"{name} must be >= 1, got {getattr(self, name)}")
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


class SegmentationInference(Inference):
    """pyannote.audio's sliding-window ``Inference`` with the outputs of all of a recording's batches in one array.

    pyannote keeps each batch's output as its own small array until it stacks them after the last batch.
    Allocated between the much larger temporary buffers of the forward passes, those small arrays keep the C
    allocator from reusing or returning the memory around them: at a 10 % step, 4 h of audio ended the
    segmentation stage with 0.4-0.6 GiB more resident than the outputs need, varying from run to run. Here each
    batch's output is copied into one array allocated for the whole recording on the first batch, and the list
    pyannote stacks holds views of it: the same values, one allocation.
    """

    _outputs: np.ndarray | None = None
    _filled: int = 0
    _capacity: int = 0

    def slide(self, waveform: torch.Tensor, sample_rate: int, hook) -> SlidingWindowFeature:
        step_samples = round(self.step * sample_rate)
        self._capacity = waveform.shape[-1] // step_samples + 2  # at least the chunks pyannote slides over
        try:
            return super().slide(waveform, sample_rate, hook)
        finally:
            self._outputs, self._filled, self._capacity = None, 0, 0

    def infer(self, chunks: torch.Tensor) -> np.ndarray:
        outputs = super().infer(chunks)
        if not self._capacity or not isinstance(outputs, np.ndarray):
            return outputs  # called outside slide, or a model with several outputs
        if self._outputs is None:
            self._outputs = np.empty((self._capacity, *outputs.shape[1:]), dtype=outputs.dtype)
        end = self._filled + len(outputs)
        self._outputs[self._filled : end] = outputs
        view, self._filled = self._outputs[self._filled : end], end
        return view


class DiarizationPipeline(SpeakerDiarization):
    """pyannote.audio's ``SpeakerDiarization`` with DiariZen's settings and memory linear in the recording length.

    On top of pyannote's pipeline: a configurable segmentation window, median filtering of the binarized
    segmentations, DiariZen's clustering settings with the memory-saving linkage
    (:mod:`diarizen_lab.evaluation.clustering`), speaker embeddings that compute each window's frame features
    once for all its local speakers, and float32 clustered segmentations. Build it with :func:`build_pipeline`,
    which also instantiates the hyper-parameters from the config.
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
        if config.clustering == "vbx":
            self.clustering = VBxClustering(
                self._plda, metric=self._embedding.metric, min_active_ratio=config.min_active_ratio,
                ahc_criterion=config.vbx_ahc_criterion, max_iters=config.vbx_max_iters,
            )
        else:
            self.clustering = AgglomerativeClustering(
                metric=self._embedding.metric, min_active_ratio=config.min_active_ratio
            )
        window = config.window or segmentation.specifications.duration
        require_receptive_field(segmentation, window, "[diarization] window")
        self._segmentation = SegmentationInference(
            segmentation,
            duration=window,
            step=config.step_ratio * window,
            skip_aggregation=True,
            batch_size=config.segmentation_batch_size,
        )

    def get_segmentations(self, file, hook=None) -> SlidingWindowFeature:
        segmentations = super().get_segmentations(file, hook=hook)
        if self.config.median_filter > 1:
            median_filter_frames(segmentations, self.config.median_filter)
        return segmentations

    def get_embeddings(
        self, file, binary_segmentations: SlidingWindowFeature, exclude_overlap: bool = False, hook=None
    ) -> np.ndarray:
        """One embedding per (chunk, local speaker), as pyannote's method, with each chunk's audio through the
        embedding model once: a model with ``forward_frames`` / ``forward_embedding`` (WeSpeaker ResNets) pools
        its frame features once per speaker; any other model gets the chunk once per speaker in the batch.

        Returns a float32 ``(num_chunks, num_speakers, dimension)`` array, filled batch by batch.
        """
        if self.training or not isinstance(self._embedding, PyannoteAudioPretrainedSpeakerEmbedding):
            return super().get_embeddings(file, binary_segmentations, exclude_overlap=exclude_overlap, hook=hook)
        num_chunks, num_frames, num_speakers = binary_segmentations.data.shape
        min_clean_frames = -1
        if exclude_overlap:  # pyannote's rule: frames with overlap are left out when enough others remain
            window_samples = binary_segmentations.sliding_window.duration * self._embedding.sample_rate
            min_clean_frames = math.ceil(num_frames * self._embedding.min_num_samples / window_samples)
        chunks_per_batch = max(1, self.embedding_batch_size // num_speakers)
        embeddings = np.full((num_chunks, num_speakers, self._embedding.dimension), np.nan, dtype=np.float32)
        batches = range(0, num_chunks, chunks_per_batch)
        if hook is not None:
            hook("embeddings", None, total=len(batches), completed=0)
        for completed, first in enumerate(batches, 1):
            indices = range(first, min(first + chunks_per_batch, num_chunks))
            waveforms = torch.stack(
                [self._audio.crop(file, binary_segmentations.sliding_window[c], mode="pad")[0] for c in indices]
            )
            masks = speaker_masks(binary_segmentations.data[first : indices.stop], min_clean_frames)
            embeddings[first : indices.stop] = self.embed_chunks(waveforms, masks)
            if hook is not None:
                hook("embeddings", embeddings[first : indices.stop], total=len(batches), completed=completed)
        return embeddings

    def embed_chunks(self, waveforms: torch.Tensor, masks: np.ndarray) -> np.ndarray:
        """``(batch, speaker, dimension)`` embeddings of ``(batch, channel, sample)`` chunks weighted by each
        local speaker's ``(batch, speaker, frame)`` mask."""
        model, device = self._embedding.model_, self._embedding.device
        weights = torch.from_numpy(masks).to(device)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as pyannote: the pooling warns when it resamples the weights
            waveforms = waveforms.to(device)
            if hasattr(model, "forward_frames") and hasattr(model, "forward_embedding"):
                if waveforms.device.type == "cpu":
                    # one window at a time: on 2 CPU threads a ResNet34 pass over 8 windows takes 0.33 s per
                    # window and 0.36 GiB, one window 0.21 s and 0.09 GiB (benchmarks/results.md)
                    frames = torch.cat([model.forward_frames(waveform[None]) for waveform in waveforms])
                else:
                    frames = model.forward_frames(waveforms)
                embeddings = model.forward_embedding(frames, weights=weights)
            else:
                batch, num_speakers, num_frames = weights.shape
                repeated = waveforms.repeat_interleave(num_speakers, dim=0)
                embeddings = model(repeated, weights=weights.reshape(-1, num_frames)).reshape(batch, num_speakers, -1)
        return embeddings.float().cpu().numpy()

    def reconstruct(
        self, segmentations: SlidingWindowFeature, hard_clusters: np.ndarray, count: SlidingWindowFeature
    ) -> SlidingWindowFeature:
        """pyannote's reconstruction (each cluster's activity in a chunk is the maximum over the local speakers
        assigned to it) into a float32 array instead of float64: same diarization, half the memory."""
        num_chunks, num_frames, _ = segmentations.data.shape
        clustered = np.full((num_chunks, num_frames, np.max(hard_clusters) + 1), np.nan, dtype=np.float32)
        for chunk, (clusters, scores) in enumerate(zip(hard_clusters, segmentations.data)):
            for cluster in np.unique(clusters[clusters >= 0]):
                clustered[chunk, :, cluster] = scores[:, clusters == cluster].max(axis=1)
        return self.to_diarization(SlidingWindowFeature(clustered, segmentations.sliding_window), count)


def speaker_masks(binary: np.ndarray, min_clean_frames: int) -> np.ndarray:
    """Per chunk and local speaker, the frames its embedding is pooled over, as pyannote chooses them: where it
    speaks alone when that leaves more than ``min_clean_frames`` frames (-1: always), else where it speaks.

    ``binary`` is ``(chunk, frame, speaker)``; the result is float32 ``(chunk, speaker, frame)``.
    """
    alone = np.sum(binary, axis=2, keepdims=True) < 2  # a frame with a NaN score is nobody's alone
    speech = np.nan_to_num(binary, nan=0.0).astype(np.float32)
    clean = speech * alone
    use_clean = clean.sum(axis=1, keepdims=True) > min_clean_frames
    return np.ascontiguousarray(np.where(use_clean, clean, speech).transpose(0, 2, 1))


def median_filter_frames(segmentations: SlidingWindowFeature, size: int) -> SlidingWindowFeature:
    """Median-filter ``(chunk, frame, speaker)`` scores along frames, chunk by chunk and in place, reflecting at
    the chunk edges (upstream DiariZen's filter); returns ``segmentations``."""
    for scores in segmentations.data:
        scores[...] = median_filter(scores, size=(size, 1), mode="reflect")
    return segmentations


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
    plda = None
    if config.clustering == "vbx":
        plda = load_plda(config.plda, checkpoint_dir, embedding.dimension)
        plda.lda_dimension = config.vbx_lda_dim
    pipeline = DiarizationPipeline(segmentation, embedding, config, plda=plda)
    segmentation_parameters = {"min_duration_off": config.min_duration_off}
    if not segmentation.specifications.powerset:
        segmentation_parameters["threshold"] = config.segmentation_threshold
    if config.clustering == "vbx":
        clustering_parameters = {"threshold": config.ahc_threshold, "Fa": config.vbx_fa, "Fb": config.vbx_fb}
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
