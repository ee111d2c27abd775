"""A data directory: ``wav.scp`` + ``rttm`` + optional ``uem``, loaded and cross-checked.

Rules applied when loading:

* every recording of ``wav.scp`` must open (soundfile) and hold at least one sample;
* every recording named in ``rttm`` or ``uem`` must be in ``wav.scp``;
* a UEM span must end before the audio does (within :data:`DURATION_TOLERANCE`);
* a recording without UEM spans (or a directory without ``uem``) is used whole;
* reference turns are clipped to the UEM spans; clipped turns are counted in one warning;
* speakers are indexed per recording by their sorted labels, whatever the line order.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from diarizen_lab.data.rttm import Turn, read_rttm, write_rttm
from diarizen_lab.data.uem import Span, read_uem, write_uem
from diarizen_lab.data.wav_scp import read_wav_scp, write_wav_scp
from diarizen_lab.errors import InputError
from diarizen_lab.utils.atomic import atomic_dir

logger = logging.getLogger(__name__)

DURATION_TOLERANCE = 0.01
"""Seconds a UEM span may run past the end of the audio (rounding in UEM files)."""


@dataclass(frozen=True)
class Problem:
    """Something wrong with a data directory: an ``"error"`` (unusable) or a ``"warning"`` (usable)."""

    severity: str
    message: str
    path: Path | None = None
    line: int | None = None
    fix: str | None = None

    def as_error(self) -> InputError:
        return InputError(self.message, path=self.path, line=self.line, fix=self.fix)

    def __str__(self) -> str:
        return str(self.as_error())


@dataclass(frozen=True)
class Recording:
    """One recording: its audio file, the spans to use and the reference turns inside them."""

    name: str
    path: Path
    sample_rate: int
    num_channels: int
    num_samples: int
    spans: tuple[Span, ...]
    turns: tuple[Turn, ...]
    """Reference turns clipped to ``spans``, sorted."""

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def speakers(self) -> tuple[str, ...]:
        """Speaker labels in index order (sorted)."""
        return tuple(sorted({turn.speaker for turn in self.turns}))


@dataclass(frozen=True)
class DataDir:
    """A loaded data directory; ``recordings`` follows the order of ``wav.scp``."""

    path: Path
    recordings: dict[str, Recording]

    @classmethod
    def load(cls, path: str | os.PathLike) -> DataDir:
        """Load ``path``; raise the first error as :class:`InputError`, log each warning on one line."""
        recordings, problems = scan_data_dir(path)
        for problem in problems:
            if problem.severity == "error":
                raise problem.as_error()
        for problem in problems:
            logger.warning("%s", problem)
        return cls(Path(path), recordings)


def clip_turns(turns: list[Turn], spans: list[Span] | tuple[Span, ...]) -> tuple[list[Turn], int, float]:
    """Intersect ``turns`` with ``spans``; return the pieces, the number of turns cut and the seconds cut.

    Zero-duration turns carry no speech and yield no piece (they are not counted as cut).
    """
    pieces = []
    num_clipped, seconds_clipped = 0, 0.0
    for turn in turns:
        kept = 0.0
        for start, end in spans:
            piece_start, piece_end = max(turn.start, start), min(turn.end, end)
            if piece_end > piece_start:
                pieces.append(Turn(turn.recording, piece_start, piece_end, turn.speaker, line=turn.line))
                kept += piece_end - piece_start
        if turn.duration - kept > 1e-9:  # not a rounding difference of a turn across adjacent spans
            num_clipped += 1
            seconds_clipped += turn.duration - kept
    return pieces, num_clipped, seconds_clipped


def scan_data_dir(path: str | os.PathLike) -> tuple[dict[str, Recording], list[Problem]]:
    """Load a data directory, collecting every problem instead of stopping at the first.

    Malformed files (a bad line in ``wav.scp``, ``rttm`` or ``uem``) and missing required files still raise
    :class:`InputError` at once. Recordings whose audio cannot be used are left out of the result.
    """
    path = Path(path)
    scp_path, rttm_path, uem_path = path / "wav.scp", path / "rttm", path / "uem"
    if not path.is_dir():
        raise InputError("not a directory", path=path, fix="give a data directory holding wav.scp and rttm")
    for required in (scp_path, rttm_path):
        if not required.is_file():
            raise InputError(
                f"missing {required.name}", path=path,
                fix="a data directory holds wav.scp, rttm and optionally uem",
            )
    audio = read_wav_scp(scp_path)
    turns_by_recording: dict[str, list[Turn]] = defaultdict(list)
    for turn in read_rttm(rttm_path):
        turns_by_recording[turn.recording].append(turn)
    uem = read_uem(uem_path) if uem_path.is_file() else None

    problems: list[Problem] = []
    for name, turns in turns_by_recording.items():
        if name not in audio:
            problems.append(Problem(
                "error", f"recording {name!r} is not in wav.scp", rttm_path, turns[0].line,
                "add its audio to wav.scp or remove its turns",
            ))
    for name in uem or {}:
        if name not in audio:
            problems.append(Problem(
                "error", f"recording {name!r} is not in wav.scp", uem_path, None,
                "add its audio to wav.scp or remove its spans",
            ))

    recordings = {}
    num_clipped, seconds_clipped = 0, 0.0
    for name, audio_path in audio.items():
        if not audio_path.is_file():
            problems.append(Problem(
                "error", f"recording {name!r}: no file {audio_path}", scp_path, None, "fix its path in wav.scp",
            ))
            continue
        try:
            info = sf.info(str(audio_path))
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            problems.append(Problem(
                "error", f"recording {name!r}: cannot open {audio_path}: {error}", scp_path, None,
                "fix the path or convert the file to WAV/FLAC",
            ))
            continue
        if info.frames == 0:
            problems.append(Problem("error", f"recording {name!r}: {audio_path} holds no audio", scp_path))
            continue
        duration = info.frames / info.samplerate
        if uem is None or name not in uem:
            if uem is not None:
                problems.append(Problem(
                    "warning", f"recording {name!r} has no span; using all of it", uem_path,
                ))
            spans = [(0.0, duration)]
        else:
            last_end = uem[name][-1][1]
            if last_end > duration + DURATION_TOLERANCE:
                problems.append(Problem(
                    "error", f"span of {name!r} ends at {last_end:.3f} s, after its audio ({duration:.3f} s)",
                    uem_path, None, "fix the UEM or the audio path",
                ))
                continue
            spans = [(start, min(end, duration)) for start, end in uem[name] if start < duration]
        clipped, num, seconds = clip_turns(turns_by_recording.get(name, []), spans)
        num_clipped += num
        seconds_clipped += seconds
        recordings[name] = Recording(
            name=name, path=audio_path, sample_rate=info.samplerate, num_channels=info.channels,
            num_samples=info.frames, spans=tuple(spans),
            turns=tuple(sorted(clipped)),
        )
    if num_clipped:
        where = "the UEM" if uem is not None else "the audio"
        problems.append(Problem(
            "warning", f"clipped {num_clipped} reference turns ({seconds_clipped:.2f} s) that run past {where}",
            rttm_path,
        ))
    return recordings, problems


def write_data_dir(
    path: str | os.PathLike,
    audio: dict[str, str | os.PathLike],
    turns: list[Turn],
    spans: dict[str, list[Span]] | None = None,
) -> None:
    """Write ``wav.scp``, ``rttm`` and (if ``spans``) ``uem`` into a new directory replacing ``path``."""
    with atomic_dir(path) as tmp:
        write_wav_scp(tmp / "wav.scp", audio)
        write_rttm(tmp / "rttm", turns)
        if spans is not None:
            write_uem(tmp / "uem", spans)
