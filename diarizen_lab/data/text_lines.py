"""Line-by-line reading of the text formats (RTTM, UEM, wav.scp) with errors that name the file and line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from diarizen_lab.errors import InputError


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
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(
                    f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1})",
                    path=path, line=number, fix="convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8",
                ) from None
