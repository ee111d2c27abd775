"""Kaldi-style ``wav.scp``: one ``<recording> <path>`` line per recording.

Only plain paths are supported: piped commands (``<recording> sox ... |``) are refused. A relative path is
resolved against the directory holding the ``wav.scp``; a path may contain spaces (the rest of the line is
the path). The recording id names the output ``<recording>.rttm``: it must be a plain file name (see
:func:`diarizen_lab.data.text_lines.check_recording_id`).

Kaldi's scp files have no comments: Kaldi reads ``# note`` as recording ``#`` at path ``note``. Such a line is
never meant as a recording, so a line starting with ``#`` is refused (naming the line) rather than read either
way silently.
"""

from __future__ import annotations

import os
from pathlib import Path

from diarizen_lab.data.text_lines import check_recording_id, numbered_lines
from diarizen_lab.errors import InputError
from diarizen_lab.utils.atomic import atomic_open


def read_wav_scp(path: str | os.PathLike) -> dict[str, Path]:
    """Map each recording to its audio file, in file order.

    Blank lines are skipped. Raises :class:`InputError` (with file and line) for a line without a path,
    a ``#`` line (see the module documentation), a recording id that is not a plain file name, a piped command,
    a recording listed twice, text that is not UTF-8, or a file that cannot be read.
    """
    path = Path(path)
    recordings: dict[str, Path] = {}
    first_line: dict[str, int] = {}
    for number, line in numbered_lines(path):
        fields = line.strip().split(maxsplit=1)
        if not fields:
            continue
        if fields[0].startswith("#"):
            raise InputError(
                "a line starting with '#': Kaldi scp files have no comments (Kaldi would read it as a recording)",
                path=path, line=number, fix="delete the line",
            )
        if len(fields) == 1:
            raise InputError(
                "expected '<recording> <path>', got one field",
                path=path, line=number, fix="add the audio path after the recording name",
            )
        name, location = fields
        check_recording_id(name, path, number)
        if location.endswith("|"):
            raise InputError(
                f"piped commands are not supported ({location!r})",
                path=path, line=number,
                fix="write the audio to a file once (e.g. run the command into <recording>.wav) "
                "and list that file instead",
            )
        if name in recordings:
            raise InputError(
                f"recording {name!r} is already listed on line {first_line[name]}",
                path=path, line=number, fix="give each recording one line",
            )
        audio = Path(location)
        recordings[name] = audio if audio.is_absolute() else path.parent / audio
        first_line[name] = number
    return recordings


def write_wav_scp(path: str | os.PathLike, recordings: dict[str, str | os.PathLike]) -> None:
    """Write ``<recording> <path>`` lines sorted by recording (atomically)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        for name in sorted(recordings):
            f.write(f"{name} {os.fspath(recordings[name])}\n")
