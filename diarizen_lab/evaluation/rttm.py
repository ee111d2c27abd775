"""Writing diarization output as RTTM (the line format is :mod:`diarizen_lab.data.rttm`'s).

Turns are snapped to the millisecond grid first and then merged per speaker, so an output file never holds two
overlapping or touching turns of the same speaker (md-eval refuses overlapping ones) nor empty turns.
"""

from __future__ import annotations

import os

from pyannote.core import Annotation

from diarizen_lab.data import rttm


def annotation_to_turns(annotation: Annotation, uri: str) -> list[rttm.Turn]:
    """The turns of ``annotation`` on the millisecond grid, merged per speaker, sorted by time then speaker."""
    if not uri or any(character.isspace() for character in uri):
        raise ValueError(f"RTTM recording names cannot be empty or contain whitespace: {uri!r}")
    turns = []
    for label in annotation.labels():
        speaker = str(label)
        if not speaker or any(character.isspace() for character in speaker):
            raise ValueError(f"RTTM speaker labels cannot be empty or contain whitespace: {speaker!r}")
        for start, end in _merged_milliseconds(annotation.label_timeline(label, copy=False)):
            turns.append(rttm.Turn(uri, start / 1000, end / 1000, speaker))
    return sorted(turns, key=lambda turn: (turn.start, turn.end, turn.speaker))


def write_rttm(path: str | os.PathLike, annotation: Annotation, uri: str) -> None:
    """Atomically write ``annotation`` as the RTTM file ``path`` for recording ``uri`` (see module docstring)."""
    rttm.write_rttm(path, annotation_to_turns(annotation, uri))


def _merged_milliseconds(timeline) -> list[tuple[int, int]]:
    """Integer-millisecond spans of one speaker, clipped at 0; overlapping or touching spans merged, empty ones
    dropped."""
    merged: list[list[int]] = []
    for start, end in sorted((max(0, round(s.start * 1000)), round(s.end * 1000)) for s in timeline):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]
