"""Speaker-embedding models for the diarization pipeline, loaded from local files only.

- A pyannote-format model folder (``pytorch_model.bin`` + ``config.yaml``, e.g. the ``wespeaker-resnet34-lm`` asset)
  or ``pytorch_model.bin`` file, named by store asset or path, read by :func:`load_pyannote_checkpoint`: the
  file is never unpickled with ``weights_only=False`` (pyannote's ``Model.from_pretrained`` does that, so a
  pickle payload in the file would run) and never reaches the hub.
- ``fbank-stats``: the mean and standard deviation of log-mel energies over the speech frames. It has no trained
  weights and exists only so that demos and tests run end to end without a pretrained speaker model; it
  separates speakers poorly and must not be used for reported results.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from pyannote.audio import Model

from diarizen_lab.errors import InputError, describe
from diarizen_lab.utils.torch_files import UnsafePickleError, load_torch_file

FBANK_STATS = "fbank-stats"
DEFAULT_EMBEDDING = "wespeaker-resnet34-lm"


class FbankStatsEmbedding(Model):
    """Smoke-test speaker embedding: weighted mean and standard deviation of log-mel energies (see module doc).

    ``forward(waveforms (batch, 1, sample), weights (batch, frame) | None) -> (batch, 2 * num_mel_bins)``; the
    weights (e.g. a speaker's activity in pyannote's pipeline) are resampled to the filterbank frames. A row
    whose weights are all zero is NaN, which pyannote's clustering discards.
    """

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 40, window_ms: float = 25.0, hop_ms: float = 10.0):
        super().__init__(sample_rate=sample_rate, num_channels=1)
        self.save_hyperparameters("num_mel_bins", "window_ms", "hop_ms")
        self.window = round(sample_rate * window_ms / 1000)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=self.window,
            hop_length=round(sample_rate * hop_ms / 1000),
            n_mels=num_mel_bins,
            center=False,
        )

    @property
    def dimension(self) -> int:
        return 2 * self.hparams.num_mel_bins

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        if waveforms.shape[-1] < self.window:
            raise ValueError(f"need at least {self.window} samples per waveform, got {waveforms.shape[-1]}")
        log_mel = torch.log(self.mel(waveforms[:, 0]) + 1e-6)  # (batch, mel, frame)
        num_frames = log_mel.shape[-1]
        if weights is None:
            weights = log_mel.new_ones(log_mel.shape[0], num_frames)
        else:
            weights = F.interpolate(weights[:, None].to(log_mel.dtype), size=num_frames, mode="nearest")[:, 0]
        total = weights.sum(dim=-1, keepdim=True)
        mean = (log_mel * weights[:, None]).sum(dim=-1) / total
        variance = ((log_mel - mean[..., None]) ** 2 * weights[:, None]).sum(dim=-1) / total
        embeddings = torch.cat([mean, torch.sqrt(variance + 1e-6)], dim=-1)
        return torch.where(total > 0, embeddings, torch.nan)


def load_embedding(name_or_path: str | os.PathLike, checkpoint_dir: str | os.PathLike | None = None) -> Model:
    """The speaker-embedding model named by ``name_or_path``: ``fbank-stats``, a store asset, or a local path.

    A missing asset raises the store's ``AssetNotFoundError`` (it names the asset, the paths searched and the fix).
    """
    if str(name_or_path) == FBANK_STATS:
        return FbankStatsEmbedding().eval()
    from diarizen_lab.store import resolve_asset

    path = resolve_asset(name_or_path, checkpoint_dir)
    checkpoint = path / "pytorch_model.bin" if path.is_dir() else path
    if not checkpoint.is_file():
        raise InputError(
            "not a pyannote model: no pytorch_model.bin", path=path,
            fix=f"pass a pyannote-format speaker-embedding folder (e.g. the {DEFAULT_EMBEDDING} asset)"
            f" or '{FBANK_STATS}'",
        )
    model = load_pyannote_checkpoint(checkpoint)
    if not hasattr(model, "dimension"):
        raise InputError(f"{type(model).__name__} is not a speaker-embedding model", path=checkpoint)
    return model.eval()


def load_pyannote_checkpoint(path: str | os.PathLike) -> Model:
    """The model of a pyannote.audio checkpoint (``pytorch_model.bin``), rebuilt as lightning's
    ``load_from_checkpoint`` does (constructor with the saved hyper-parameters, ``on_load_checkpoint``, strict
    ``load_state_dict``) from a file read with ``weights_only=True``; its architecture must be an allowed model
    class (:func:`diarizen_lab.models.io.allowed_architecture`).

    Raises :class:`InputError` naming the file for an unreadable file, a pickle payload, a foreign architecture
    or weights that do not fit.
    """
    from diarizen_lab.models.io import allowed_architecture

    path = Path(path)
    fix = "re-create or copy the file again; it must be a pyannote.audio checkpoint"
    try:
        checkpoint = load_torch_file(path)
    except UnsafePickleError as error:
        raise InputError(f"cannot load the speaker-embedding model: {error.detail}", path=path) from None
    except Exception as error:  # torch raises many types for unreadable or foreign files
        raise InputError(f"cannot load the speaker-embedding model ({describe(error)})", path=path, fix=fix) from None
    try:
        architecture = checkpoint["pyannote.audio"]["architecture"]
        model_class = allowed_architecture(f"{architecture['module']}.{architecture['class']}")
        parameters = inspect.signature(model_class.__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        hyper_parameters = {
            key: value for key, value in dict(checkpoint.get("hyper_parameters", {})).items()
            if takes_any or key in parameters
        }
        model = model_class(**hyper_parameters)
        model.on_load_checkpoint(checkpoint)
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise InputError(f"cannot load the speaker-embedding model ({describe(error)})", path=path, fix=fix) from None
    return model
