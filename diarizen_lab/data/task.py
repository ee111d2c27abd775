"""The task a segmentation model is trained for: the one owner of the sample rate, chunk duration and speakers.

A training config states these facts once, in its ``[task]`` section::

    [task]
    sample_rate = 16000           # Hz, of the model input and of every dataset
    chunk_size = 8.0              # seconds per training chunk
    max_speakers_per_chunk = 4    # local speakers (label columns, pyannote ``specifications.classes``)
    max_speakers_per_frame = 2    # simultaneous speakers in one powerset class

The recipe hands the :class:`Task` to the model (its pyannote ``Specifications``), to the objective (its
powerset) and to every dataset, so that nothing can disagree. It plays the role of a pyannote.audio ``Task``
without its data loading: the model stores it as ``model.task`` and ``model.pt`` files record it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from diarizen_lab.errors import DiarizenLabError

__all__ = ["TASK_KEYS", "Task"]


@dataclasses.dataclass(frozen=True)
class Task:
    """Sample rate, chunk duration and speaker counts of a powerset segmentation task.

    Parameters
    ----------
    sample_rate : int
        Sample rate of the model input, in Hz.
    chunk_size : float
        Duration of a training chunk, in seconds (pyannote ``specifications.duration``).
    max_speakers_per_chunk : int
        Local speakers per chunk: the label columns and the pyannote ``specifications.classes``.
    max_speakers_per_frame : int
        Largest number of simultaneous speakers in one powerset class.
    """

    sample_rate: int = 16000
    chunk_size: float = 8.0
    max_speakers_per_chunk: int = 4
    max_speakers_per_frame: int = 2

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise DiarizenLabError(f"[task] sample_rate must be positive, got {self.sample_rate}")
        if self.chunk_size <= 0:
            raise DiarizenLabError(f"[task] chunk_size must be positive, got {self.chunk_size}")
        if not 1 <= self.max_speakers_per_frame <= self.max_speakers_per_chunk:
            raise DiarizenLabError(
                f"[task] need 1 <= max_speakers_per_frame ({self.max_speakers_per_frame}) "
                f"<= max_speakers_per_chunk ({self.max_speakers_per_chunk})"
            )

    @property
    def chunk_samples(self) -> int:
        """Samples in one chunk."""
        return round(self.chunk_size * self.sample_rate)

    @property
    def specifications(self) -> Any:
        """pyannote.audio ``Specifications`` of a permutation-invariant powerset model for this task (what a
        pyannote ``Model`` reads from its ``task``)."""
        from pyannote.audio.core.task import Problem, Resolution, Specifications

        return Specifications(
            problem=Problem.MONO_LABEL_CLASSIFICATION,
            resolution=Resolution.FRAME,
            duration=self.chunk_size,
            classes=[f"speaker#{i + 1}" for i in range(self.max_speakers_per_chunk)],
            powerset_max_classes=self.max_speakers_per_frame,
            permutation_invariant=True,
        )

    def powerset(self) -> Any:
        """pyannote.audio ``Powerset`` of this task's speaker counts."""
        from pyannote.audio.utils.powerset import Powerset

        return Powerset(self.max_speakers_per_chunk, self.max_speakers_per_frame)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as stored in ``model.pt`` (``{"task": ...}``) and the resolved config."""
        return dataclasses.asdict(self)

    @classmethod
    def split_legacy_args(cls, args: Mapping[str, Any]) -> tuple[Task, dict[str, Any]]:
        """The task held by model arguments written before ``[task]`` existed, and the other arguments.

        ``model.pt`` files of earlier versions kept ``chunk_size``, ``sample_rate`` and the speaker counts
        among the model's constructor arguments; missing ones take the defaults those versions had.
        """
        task = cls(**{key: args[key] for key in TASK_KEYS if key in args})
        return task, {key: value for key, value in args.items() if key not in TASK_KEYS}

    def check_same(self, other: Task, this: str, that: str) -> None:
        """Raise a one-line error naming both sources when ``other`` differs from this task."""
        differences = [
            f"{field.name} {getattr(self, field.name)} vs {getattr(other, field.name)}"
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(other, field.name)
        ]
        if differences:
            raise DiarizenLabError(
                f"{this} and {that} describe different tasks ({', '.join(differences)}): "
                f"set [task] to the values of {that}, or use a model trained for this task"
            )


#: The names of the task facts (model arguments of earlier versions; keys of ``[task]``).
TASK_KEYS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Task))
