"""Line-by-line reading of the text formats (RTTM, UEM, wav.scp) with errors that name the file and line.

Rules shared by the three formats:

- a UTF-8 byte-order mark at the start of the file is skipped (editors on Windows write one);
- a time is a plain decimal number (``12``, ``0.5``, ``1e-3``): Python's ``float`` also reads ``1_0.5`` as 10.5,
  ``nan`` and ``inf``, which no annotation tool writes, so they are refused; a time must be below
  :data:`MAX_SECONDS` so that sums of times stay finite;
- a recording id names output files (``<recording>.rttm``), so it must be a plain file name: no ``/`` or ``\\``,
  not ``.`` or ``..``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

from diarizen_lab.errors import InputError

BOM = "\ufeff"
MAX_SECONDS = 1e9
"""Upper bound of a time (about 31 years): larger values are typos, and sums of them could overflow to inf."""
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def numbered_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for each line of a UTF-8 file.

    Raises :class:`InputError` when the file cannot be opened (missing, a directory, no permission) or a line
    is not valid UTF-8 (the line is named).
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", path=path) from None
    except OSError as error:
        raise InputError(f"cannot read ({error.strerror or error})", path=path) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
                yield number, text.removeprefix(BOM) if number == 1 else text
            except UnicodeDecodeError as error:
                raise InputError(
                    f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1})",
                    path=path, line=number, fix="convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8",
                ) from None


def parse_seconds(text: str, what: str, path: str | os.PathLike, line: int) -> float:
    """A time field read as seconds (see the module documentation); :class:`InputError` naming ``what``, the
    file and the line otherwise."""
    try:
        value: float | None = float(text)
    except ValueError:
        value = None
    if value is not None and not math.isfinite(value):
        raise InputError(f"{what} {text!r} is not a finite number", path=path, line=line)
    if value is None or not _DECIMAL.fullmatch(text):
        raise InputError(f"{what} {text!r} is not a number", path=path, line=line)
    if abs(value) >= MAX_SECONDS:
        raise InputError(f"{what} {text!r} is too large (at most {MAX_SECONDS:.0e} seconds)", path=path, line=line)
    return value


def check_recording_id(name: str, path: str | os.PathLike, line: int) -> str:
    """``name`` if it can name an output file (see the module documentation); :class:`InputError` otherwise."""
    if name in (".", "..") or any(character in name for character in "/\\\0"):
        raise InputError(
            f"recording id {name!r} is not a plain file name", path=path, line=line,
            fix="recording ids name output files: use no '/', '\\' or '..'",
        )
    return name
