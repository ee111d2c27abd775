"""UEM files: the scored (or trained-on) regions of each recording.

Each line is ``<recording> <channel> <start> <end>`` in seconds; a recording may have several
non-overlapping spans. A recording absent from the UEM (or a data directory without ``uem``) is used whole.
"""

from __future__ import annotations

import os
from pathlib import Path

from diarizen_lab.data.text_lines import check_recording_id, numbered_lines, parse_seconds
from diarizen_lab.errors import InputError
from diarizen_lab.utils.atomic import atomic_open

Span = tuple[float, float]


def read_uem(path: str | os.PathLike) -> dict[str, list[Span]]:
    """Map each recording to its ``(start, end)`` spans, sorted by start.

    Raises :class:`InputError` naming the file and line for a wrong number of fields, a recording id that is
    not a plain file name, a time that is not a finite decimal number (see :mod:`diarizen_lab.data.text_lines`),
    a negative start, an end not after its start, spans of one recording that overlap, text that is
    not UTF-8, or a file that cannot be read.
    """
    path = Path(path)
    spans: dict[str, list[tuple[float, float, int]]] = {}
    for number, line in numbered_lines(path):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        if len(fields) != 4:
            raise InputError(
                f"expected 4 fields '<recording> <channel> <start> <end>', got {len(fields)}",
                path=path, line=number,
            )
        recording, _, start_text, end_text = fields
        check_recording_id(recording, path, number)
        start = parse_seconds(start_text, "start time", path, number)
        end = parse_seconds(end_text, "end time", path, number)
        if start < 0:
            raise InputError(f"negative start time {start_text}", path=path, line=number)
        if end <= start:
            raise InputError(f"end {end_text} is not after start {start_text}", path=path, line=number)
        spans.setdefault(recording, []).append((start, end, number))

    result = {}
    for recording, entries in spans.items():
        entries.sort()
        for (_, previous_end, previous_line), (start, _, number) in zip(entries, entries[1:]):
            if start < previous_end:
                raise InputError(
                    f"span of {recording!r} overlaps the span on line {previous_line}",
                    path=path, line=number, fix="merge overlapping spans into one",
                )
        result[recording] = [(start, end) for start, end, _ in entries]
    return result


def write_uem(path: str | os.PathLike, spans: dict[str, list[Span]]) -> None:
    """Write ``<recording> 1 <start> <end>`` lines (to the microsecond), sorted, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        for recording in sorted(spans):
            for start, end in sorted(spans[recording]):
                f.write(f"{recording} 1 {_seconds_text(start)} {_seconds_text(end)}\n")


def _seconds_text(seconds: float) -> str:
    """Seconds with at most 6 decimals and no trailing zeros (1546.333312, 0, 12.5)."""
    return f"{seconds:.6f}".rstrip("0").rstrip(".")
