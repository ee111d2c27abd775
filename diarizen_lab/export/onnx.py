"""ONNX export of powerset segmentation models, checked against torch, and a pyannote ``Model`` that runs one.

:func:`export_onnx` writes a ``.onnx`` file with a dynamic batch and length, whose ``metadata_props`` hold what
the pipeline needs (:func:`segmentation_metadata`); :class:`OnnxSegmentationModel` runs such a file with
onnxruntime inside pyannote.audio's ``Inference`` and ``SpeakerDiarization``.

Exporter: torch's ``torch.export``-based exporter (``dynamo=True``). The TorchScript exporter (``dynamo=False``)
is not reliable here: it traces ``nn.MultiheadAttention`` (the Conformer) with the example's frame count baked
into a reshape, so the file only runs on inputs of that length. ``torch.export`` keeps batch and length symbolic
given three settings, all in :func:`_export_graph`:

- ``prefer_deferred_runtime_asserts_over_guards``: the frame count of WavLM's strided convolutions is a chain of
  floor divisions, from which torch.export derives guards that always hold but that it cannot prove (such as
  ``(4 + 4 n) % (1 + n) == 0``); without it the length would be refused as dynamic;
- the math kernel of ``scaled_dot_product_attention`` while tracing: the fused CPU kernel's output layout turns
  WavLM's ``reshape`` after attention into a view, which fails when the exporter decomposes attention;
- a minimum input length of two output frames' receptive field (the exporter refuses shorter ones).

The rest exports as written: WavLM's weight-normalised positional convolution (the parametrization's weight
is computed in the graph from the stored direction and norm), its relative-position buckets (arange, log, casts), its batched convolutional
front end (tracing runs with autograd on; the one-window-at-a-time loop is for CPU inference without autograd).
The log-mel front end computes its spectrum as a DFT-matrix product in the exported copy
(:meth:`~diarizen_lab.models.fbank.LogMelFbank.use_dft_matrix`): onnxruntime's STFT operator differs from
``torch.stft`` by up to 4e-3 in log-mel energy.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pyannote.audio.core.io import Audio
from pyannote.audio.core.model import Model
from torch import nn

from diarizen_lab.errors import DiarizenLabError, InputError, describe
from diarizen_lab.models.fbank import LogMelFbank
from diarizen_lab.models.io import model_task
from diarizen_lab.utils.atomic import atomic_path

FORMAT = "diarizen_lab.onnx/2"
INPUT, OUTPUT = "waveforms", "log_probs"
TOLERANCE = 1e-4
"""Largest accepted difference between onnxruntime's and torch's log-probabilities."""
QUANTIZED_OPS = ["MatMul", "Gemm"]
"""Operators that ``--int8`` quantizes: the linear layers, which hold nearly all of the weights and compute.
Convolutions stay in float32 (the WavLM front end reads raw samples)."""


@dataclasses.dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how close onnxruntime came to torch."""

    path: Path
    max_difference: float
    """Largest absolute difference of log-probabilities over the check inputs (float32 model)."""
    check_shapes: list[tuple[int, ...]]
    int8_path: Path | None = None
    int8_max_difference: float | None = None


def segmentation_metadata(model: Model) -> dict[str, str]:
    """``metadata_props`` of an exported ``model``, each as JSON: format; architecture, which holds the model's
    :class:`~diarizen_lab.data.task.Task` (sample rate, chunk, speakers: the pyannote specifications); number of
    input channels; frame geometry (receptive field of one frame, step between frames, center of frame 0, in
    samples)."""
    size = model.receptive_field_size(1)
    frames = {
        "receptive_field_size": size,
        "receptive_field_step": model.receptive_field_size(2) - size,
        "receptive_field_center": model.receptive_field_center(0),
    }
    values = {
        "architecture": model.architecture(),
        "num_channels": model.hparams.num_channels,
        "frames": frames,
    }
    return {"format": FORMAT, **{key: json.dumps(value) for key, value in values.items()}}


def require_onnx() -> None:
    """Fail with a one-line error when the optional ``[export]`` extra is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise DiarizenLabError(
            f"ONNX support needs the [export] extra ({describe(error)}): pip install -e '.[export]'"
        ) from None


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded :func:`segmentation_metadata` of an exported file (``InputError`` if it is not one)."""
    require_onnx()
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, OSError, ...
        raise InputError(f"cannot read ONNX file ({describe(error)})", path=path, fix="export it again") from None
    props = {prop.key: prop.value for prop in proto.metadata_props}
    if props.get("format") != FORMAT:
        raise InputError(
            f"not a {FORMAT} segmentation model (format: {props.get('format')!r})",
            path=path, fix="export the model with `diarizen-lab export`",
        )
    try:
        return {key: json.loads(value) for key, value in props.items() if key != "format"}
    except json.JSONDecodeError as error:
        raise InputError(f"corrupt metadata ({describe(error)})", path=path, fix="export it again") from None


def export_onnx(
    model: Model,
    path: str | os.PathLike,
    *,
    int8: bool = False,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> ExportReport:
    """Export ``model`` to ``path`` and check it against torch on three inputs of batch and length other than
    the traced example's.

    Parameters
    ----------
    model : PowersetSegmentationModel
        The segmentation model (left unchanged: a copy is exported).
    path : path
        Output file. It appears only once the check passed: a failed export leaves nothing behind.
    int8 : bool
        Also write ``<stem>.int8.onnx`` with onnxruntime's dynamic int8 quantization of the linear layers
        (:data:`QUANTIZED_OPS`), and report its difference (no tolerance applies to it).
    tolerance : float
        Largest accepted ``max |log-prob difference|`` of the float32 export; above it, ``DiarizenLabError``.
    seed : int
        Seed of the random check waveforms.
    """
    require_onnx()
    path = Path(path)
    inputs = check_inputs(model, seed)
    with atomic_path(path) as tmp:
        _export_graph(model, tmp)
        _write_metadata(tmp, segmentation_metadata(model))
        difference = max_difference(model, tmp, inputs)
        if not difference <= tolerance:
            raise DiarizenLabError(
                f"{path}: onnxruntime's log-probabilities differ from torch's by {difference:.3g} "
                f"(tolerance {tolerance:g}); nothing written"
            )
    report = ExportReport(path, difference, [tuple(x.shape) for x in inputs])
    if int8:
        report.int8_path = path.with_name(f"{path.stem}.int8{path.suffix}")
        with atomic_path(report.int8_path) as tmp:
            _quantize(path, tmp)
            report.int8_max_difference = max_difference(model, tmp, inputs)
    return report


def check_inputs(model: Model, seed: int = 0) -> list[torch.Tensor]:
    """Three random ``(batch, channel, sample)`` waveforms: one training chunk, then a shorter batch of 3 and a
    longer batch of 2, both of lengths that are not a whole number of frames."""
    chunk = model.audio.get_num_samples(model.specifications.duration)
    shapes = [(1, chunk), (3, chunk // 2 + 123), (2, chunk + 4567)]
    generator = torch.Generator().manual_seed(seed)
    channels = model.hparams.num_channels
    return [0.1 * torch.randn(batch, channels, length, generator=generator) for batch, length in shapes]


def max_difference(model: Model, onnx_path: str | os.PathLike, inputs: list[torch.Tensor]) -> float:
    """Largest absolute difference between torch's and onnxruntime's log-probabilities over ``inputs``."""
    session = inference_session(onnx_path)
    worst = 0.0
    for waveforms in inputs:
        with torch.inference_mode():
            expected = model(waveforms).numpy()
        (actual,) = session.run([OUTPUT], {INPUT: waveforms.numpy()})
        if actual.shape != expected.shape:
            raise DiarizenLabError(
                f"{onnx_path}: onnxruntime output shape {actual.shape} != torch's {expected.shape} for input "
                f"{tuple(waveforms.shape)}"
            )
        worst = max(worst, float(np.abs(actual - expected).max()))
    return worst


def inference_session(path: str | os.PathLike, threads: int | None = None):
    """A CPU onnxruntime session on ``path`` with ``threads`` intra-op threads (default: torch's number)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail / InvalidGraph / ... types
        raise InputError(f"onnxruntime cannot load it ({describe(error)})", path=path, fix="export it again") from None


def _exportable(model: Model) -> nn.Module:
    """A copy of ``model`` in eval mode, without gradients, with front ends in their exportable form."""
    model = copy.deepcopy(model).eval().requires_grad_(False)
    if getattr(model, "freeze_wavlm", False):
        # only switches autograd off around WavLM, which sends CPU batches through its front end one window at
        # a time (a loop over the batch, which cannot stay dynamic); without gradients it changes nothing else
        model.freeze_wavlm = False
    for module in model.modules():
        if isinstance(module, LogMelFbank):
            module.use_dft_matrix()
    return model


def _export_graph(model: Model, path: Path) -> None:
    """Write the ONNX graph of ``model`` with a dynamic batch and length (see the module docstring)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    exportable = _exportable(model)
    min_samples = model.receptive_field_size(2)
    example = torch.zeros(2, model.hparams.num_channels, 2 * min_samples + 777)
    dynamic = {0: torch.export.Dim("batch"), 2: torch.export.Dim("samples", min=min_samples)}
    with sdpa_kernel(SDPBackend.MATH), torch.enable_grad(), _quiet("torch.onnx"):
        try:
            program = torch.export.export(
                exportable, (example,), dynamic_shapes=(dynamic,), strict=False,
                prefer_deferred_runtime_asserts_over_guards=True,
            )
            torch.onnx.export(
                program, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                external_data=False, verbose=False,
            )
        except Exception as error:  # torch.export / torch.onnx raise many types
            raise DiarizenLabError(
                f"cannot export {type(model).__name__} to ONNX ({describe(error)})"
            ) from error


@contextlib.contextmanager
def _quiet(name: str | None) -> Iterator[None]:
    """Silence the warnings of logger ``name`` (torch.onnx's about torchvision operators, which we do not use;
    onnxruntime's quantizer's advice, on the root logger, to pre-process the graph, which it does not need)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _write_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def _quantize(source: Path, target: Path) -> None:
    """onnxruntime's dynamic int8 quantization of :data:`QUANTIZED_OPS`, keeping the metadata."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet(None):
        quantize_dynamic(source, target, op_types_to_quantize=QUANTIZED_OPS, weight_type=QuantType.QInt8)
    metadata = {prop.key: prop.value for prop in onnx.load(str(source), load_external_data=False).metadata_props}
    _write_metadata(target, metadata)


class OnnxSegmentationModel(Model):
    """An exported segmentation model run by onnxruntime, as a pyannote ``Model`` (CPU).

    ``Inference`` and ``SpeakerDiarization`` use it like the torch model it was exported from: same
    specifications, frame geometry and output; ``forward`` takes ``(batch, channel, sample)`` waveforms and
    returns ``(batch, frame, class)`` log-probabilities on the input's device.

    Parameters
    ----------
    path : path
        A file written by :func:`export_onnx`.
    threads : int, optional
        onnxruntime intra-op threads (default: torch's number of threads).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        metadata = read_metadata(path)
        task, _ = model_task(metadata["architecture"])
        if task is None:
            raise InputError("its architecture has no task", path=path, fix="export it again")
        super().__init__(sample_rate=task.sample_rate, num_channels=1)
        if metadata["num_channels"] > 1:  # as PowersetSegmentationModel: pyannote's Model only declares mono input
            self.hparams.num_channels = metadata["num_channels"]
            self.audio = Audio(sample_rate=task.sample_rate, mono=None)
        self.task = task  # pyannote's Model reads its specifications from its task
        self.path = Path(path)
        self.metadata = metadata
        self._frames = metadata["frames"]
        self._session = inference_session(path, threads)

    def architecture(self) -> dict[str, Any]:
        """The architecture of the exported torch model (``{"path", "args", "task"}``)."""
        return self.metadata["architecture"]

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for ``num_samples`` input samples."""
        size, step = self._frames["receptive_field_size"], self._frames["receptive_field_step"]
        return max(0, (num_samples - size) // step + 1)

    def receptive_field_size(self, num_frames: int = 1) -> int:
        """Receptive field of ``num_frames`` consecutive output frames, in samples."""
        return self._frames["receptive_field_size"] + (num_frames - 1) * self._frames["receptive_field_step"]

    def receptive_field_center(self, frame: int = 0) -> int:
        """Sample index at the center of the receptive field of output frame ``frame``."""
        return self._frames["receptive_field_center"] + frame * self._frames["receptive_field_step"]

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        (log_probs,) = self._session.run([OUTPUT], {INPUT: waveforms.detach().float().cpu().numpy()})
        return torch.from_numpy(log_probs).to(waveforms.device)
