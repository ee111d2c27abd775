"""NIST RTTM speaker turns.

Each ``SPEAKER`` line has 10 whitespace-separated fields::

    SPEAKER <recording> <channel> <start> <duration> <ortho> <stype> <speaker> <conf> <slat>

Times are seconds (floats). ``<NA>`` stands for a missing value and is accepted in every field except the
recording, start, duration and speaker. Lines of the other NIST RTTM types (``SPKR-INFO``, ``LEXEME``, ...)
describe no turn and are skipped; blank lines and ``;;`` comments too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from diarizen_lab.data.text_lines import check_recording_id, numbered_lines, parse_seconds
from diarizen_lab.errors import InputError
from diarizen_lab.utils.atomic import atomic_open

if TYPE_CHECKING:
    from pyannote.core import Annotation

NOT_AVAILABLE = "<NA>"
NUM_FIELDS = 10
OTHER_TYPES = frozenset(
    {"SEGMENT", "NOSCORE", "NO_RT_METADATA", "LEXEME", "NON-LEX", "NON-SPEECH", "FILLER", "EDIT", "IP", "SU",
     "CB", "A/P", "SPKR-INFO"}
)


@dataclass(frozen=True, slots=True, order=True)
class Turn:
    """One speaker turn: ``speaker`` talks in ``recording`` from ``start`` to ``end`` (seconds).

    Turns sort by (recording, start, end, speaker).
    """

    recording: str
    start: float
    end: float
    speaker: str
    line: int | None = field(default=None, compare=False)
    """Line of the RTTM file the turn was read from, for error messages."""

    @property
    def duration(self) -> float:
        return self.end - self.start


def read_rttm(path: str | os.PathLike) -> list[Turn]:
    """Read the ``SPEAKER`` turns of an RTTM file, in file order.

    Raises :class:`InputError` naming the file and line for a wrong number of fields, an unknown line type,
    a missing recording or speaker name, a recording id that is not a plain file name, a time that is not a
    finite decimal number (see :mod:`diarizen_lab.data.text_lines`), a negative start or duration, text that
    is not UTF-8, or a file that cannot be read.
    Zero-duration turns are kept (``data check`` reports them).
    """
    path = Path(path)
    turns = []
    for number, line in numbered_lines(path):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        if len(fields) != NUM_FIELDS:
            raise InputError(f"expected {NUM_FIELDS} fields, got {len(fields)}", path=path, line=number)
        kind, recording, _, start, duration, _, _, speaker, _, _ = fields
        if kind in OTHER_TYPES:
            continue
        if kind != "SPEAKER":
            raise InputError(
                f"unknown RTTM line type {kind!r}", path=path, line=number,
                fix="speaker turns are 'SPEAKER' lines",
            )
        for value, what in ((recording, "recording"), (speaker, "speaker")):
            if value == NOT_AVAILABLE:
                raise InputError(f"the {what} name is {NOT_AVAILABLE}", path=path, line=number)
        check_recording_id(recording, path, number)
        start_s = parse_seconds(start, "start time", path, number)
        duration_s = parse_seconds(duration, "duration", path, number)
        if start_s < 0:
            raise InputError(f"negative start time {start}", path=path, line=number)
        if duration_s < 0:
            raise InputError(f"negative duration {duration}", path=path, line=number)
        turns.append(Turn(recording, start_s, start_s + duration_s, speaker, line=number))
    return turns


def format_turn(turn: Turn) -> str:
    """One RTTM line (without newline), times rounded to the millisecond."""
    return (
        f"SPEAKER {turn.recording} 1 {turn.start:.3f} {turn.duration:.3f} "
        f"<NA> <NA> {turn.speaker} <NA> <NA>"
    )


def write_rttm(path: str | os.PathLike, turns: Iterable[Turn]) -> None:
    """Write turns in sorted order, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        for turn in sorted(turns):
            f.write(format_turn(turn) + "\n")


def to_annotations(turns: Iterable[Turn]) -> dict[str, Annotation]:
    """Group turns into one ``pyannote.core.Annotation`` per recording (``uri`` = recording)."""
    from pyannote.core import Annotation, Segment

    annotations: dict[str, Annotation] = {}
    for index, turn in enumerate(turns):
        if turn.recording not in annotations:
            annotations[turn.recording] = Annotation(uri=turn.recording)
        annotations[turn.recording][Segment(turn.start, turn.end), index] = turn.speaker
    return annotations
