"""Batched log-mel filterbank front end with exact pyannote frame geometry."""

from __future__ import annotations

import math

import torch
import torchaudio
from pyannote.audio.utils.receptive_field import multi_conv_num_frames, multi_conv_receptive_field_size
from torch import nn


class LogMelFbank(nn.Module):
    """Log-mel filterbank features, optionally stacked over consecutive frames.

    The short-time Fourier transform uses no padding (``center=False``): frame ``i`` is computed from samples
    ``[i * hop, i * hop + window)`` (a Hann window of ``window_ms``), so the front end is a strided convolution of
    kernel ``window`` and stride ``hop``. Log-mel energies are mean-normalised per chunk and mel bin.
    ``frame_stacking = k`` concatenates ``k`` consecutive frames (stride ``k``, trailing remainder dropped), a second
    convolution of kernel and stride ``k``: with ``k = 2`` the frame rate is 20 ms, the same as WavLM's, and an 8 s
    chunk gives 399 frames.

    Parameters
    ----------
    sample_rate : int
        Input sample rate in Hz.
    num_mel_bins : int
        Number of mel filters.
    window_ms, hop_ms : float
        Analysis window and shift in milliseconds.
    frame_stacking : int
        Number of consecutive frames concatenated into one output frame.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        num_mel_bins: int = 80,
        window_ms: float = 25.0,
        hop_ms: float = 10.0,
        frame_stacking: int = 2,
    ) -> None:
        super().__init__()
        if frame_stacking < 1:
            raise ValueError(f"frame_stacking must be >= 1, got {frame_stacking}.")
        self.window_size = round(sample_rate * window_ms / 1000)
        self.hop_size = round(sample_rate * hop_ms / 1000)
        self.frame_stacking = frame_stacking
        self.num_mel_bins = num_mel_bins
        num_fft_bins = self.window_size // 2 + 1
        mel_filters = torchaudio.functional.melscale_fbanks(
            num_fft_bins, f_min=0.0, f_max=sample_rate / 2, n_mels=num_mel_bins, sample_rate=sample_rate
        )
        self.register_buffer("window", torch.hann_window(self.window_size), persistent=False)
        self.register_buffer("mel_filters", mel_filters, persistent=False)
        self.register_buffer("dft_matrix", None, persistent=False)
        self._geometry = {
            "kernel_size": [self.window_size, frame_stacking],
            "stride": [self.hop_size, frame_stacking],
            "padding": [0, 0],
            "dilation": [1, 1],
        }

    @property
    def dimension(self) -> int:
        """Feature dimension of one output frame."""
        return self.num_mel_bins * self.frame_stacking

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for ``num_samples`` input samples."""
        return multi_conv_num_frames(num_samples, **self._geometry)

    def receptive_field_size(self, num_frames: int = 1) -> int:
        """Samples seen by ``num_frames`` consecutive output frames."""
        return multi_conv_receptive_field_size(num_frames, **self._geometry)

    def receptive_field_center(self, frame: int = 0) -> int:
        """Sample index at the center of output frame ``frame``'s receptive field.

        Computed on the whole receptive field: chaining pyannote's per-layer formula would round the even
        stacking kernel down and place the center half an STFT hop early.
        """
        step = self.receptive_field_size(2) - self.receptive_field_size(1)
        return frame * step + (self.receptive_field_size(1) - 1) // 2

    def use_dft_matrix(self) -> None:
        """Compute the spectrum as a product of the frames with a windowed DFT matrix instead of ``torch.stft``.

        Same features up to float rounding; used for ONNX export, whose complex-valued STFT is not exported
        exactly (onnxruntime's STFT operator differs from ``torch.stft`` by up to 4e-3 in log-mel energy).
        """
        bins = torch.arange(self.window_size // 2 + 1, dtype=torch.float64)[:, None]
        angles = 2 * math.pi / self.window_size * bins * torch.arange(self.window_size, dtype=torch.float64)
        window = self.window.double()
        matrix = torch.cat([torch.cos(angles) * window, -torch.sin(angles) * window])
        self.dft_matrix = matrix.T.to(self.window.dtype).to(self.window.device)  # (window, 2 * fft_bin)

    def power_spectrum(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, sample)`` -> ``(batch, fft_bin, frame)`` power of the unpadded short-time Fourier transform."""
        if self.dft_matrix is None:
            spectrum = torch.stft(
                waveforms.float(),
                n_fft=self.window_size,
                hop_length=self.hop_size,
                window=self.window,
                center=False,
                return_complex=True,
            )
            return spectrum.real.square() + spectrum.imag.square()
        parts = waveforms.float().unfold(-1, self.window_size, self.hop_size) @ self.dft_matrix
        real, imaginary = parts.chunk(2, dim=-1)
        return (real.square() + imaginary.square()).transpose(1, 2)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, sample)`` waveforms -> ``(batch, frame, num_mel_bins * frame_stacking)`` features."""
        if waveforms.shape[-1] < self.window_size:
            raise ValueError(f"Need at least {self.window_size} samples, got {waveforms.shape[-1]}.")
        power = self.power_spectrum(waveforms)
        log_mel = torch.log(torch.einsum("bkf,km->bfm", power, self.mel_filters) + 1e-6)
        log_mel = log_mel - log_mel.mean(dim=1, keepdim=True)
        batch_size, num_frames, _ = log_mel.shape
        num_frames -= num_frames % self.frame_stacking
        return log_mel[:, :num_frames].reshape(batch_size, num_frames // self.frame_stacking, self.dimension)
