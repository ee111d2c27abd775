"""Where a model's output frames sit in time, relative to the start of a chunk.

Labeling rule (used by :class:`~diarizen_lab.data.dataset.ChunkDataset`): frame ``f`` is active for a
speaker when the centre of its receptive field, ``start + f * step + duration / 2`` seconds after the chunk
start, lies inside one of the speaker's turns (start included, end excluded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from diarizen_lab.errors import DiarizenLabError

if TYPE_CHECKING:
    from pyannote.core import SlidingWindow


class FramedModel(Protocol):
    """The part of the pyannote.audio ``Model`` API that frame geometry needs."""

    receptive_field: SlidingWindow

    def num_frames(self, num_samples: int) -> int: ...

    def receptive_field_size(self, num_frames: int = 1) -> int: ...


@dataclass(frozen=True)
class FrameGeometry:
    """Output frames of a model for one chunk: ``num_frames`` receptive fields of ``duration`` seconds,
    ``step`` seconds apart, the first starting ``start`` seconds after the chunk start (may be negative)."""

    num_frames: int
    step: float
    duration: float
    start: float

    @classmethod
    def from_model(cls, model: FramedModel, chunk_size: float) -> FrameGeometry:
        """Read the geometry of ``model`` for chunks of ``chunk_size`` seconds.

        Uses only ``model.num_frames``, ``model.receptive_field_size`` and ``model.receptive_field``; the
        sample rate is recovered from the receptive field (samples / seconds).
        """
        field = model.receptive_field
        sample_rate = round(model.receptive_field_size(1) / field.duration)
        require_receptive_field(model, chunk_size, "chunk_size")
        return cls(
            num_frames=int(model.num_frames(round(chunk_size * sample_rate))),
            step=float(field.step),
            duration=float(field.duration),
            start=float(field.start),
        )

    def centers(self) -> np.ndarray:
        """Centre of each frame's receptive field, in seconds from the chunk start (float64)."""
        return self.start + self.duration / 2 + self.step * np.arange(self.num_frames)

    @property
    def end(self) -> float:
        """End of the last frame's receptive field, in seconds from the chunk start."""
        return self.start + (self.num_frames - 1) * self.step + self.duration

    def sliding_window(self, offset: float = 0.0) -> SlidingWindow:
        """The frames as a ``pyannote.core.SlidingWindow`` for a chunk starting at ``offset`` seconds."""
        from pyannote.core import SlidingWindow

        return SlidingWindow(start=offset + self.start, duration=self.duration, step=self.step)


def require_receptive_field(model: FramedModel, seconds: float, setting: str) -> None:
    """Refuse a chunk (or inference window) of ``seconds`` shorter than one receptive field of ``model``:
    it would have no output frame (``setting`` names it in the message)."""
    field = model.receptive_field.duration
    if seconds < field:
        raise DiarizenLabError(
            f"{setting} = {seconds:g} s is shorter than the model's receptive field ({field:g} s): "
            f"use at least {field:g} s"
        )

