"""Errors caused by user input or the environment.

Every such error is printed by the CLI as a single line (``diarizen-lab: error: ...``) with exit code 2,
never as a traceback. Messages name the file (and line, when there is one) and say what to do.
"""

from __future__ import annotations

from os import PathLike


class DiarizenLabError(Exception):
    """A problem the user can fix: bad input, a missing asset, a wrong setting."""


class InputError(DiarizenLabError):
    """A problem in an input file, located by path and (optionally) line number.

    >>> str(InputError("expected 10 fields, got 8", path="data/train/rttm", line=123))
    'data/train/rttm:123: expected 10 fields, got 8'
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.fix = fix
        location = ""
        if self.path is not None:
            location = self.path if line is None else f"{self.path}:{line}"
            location += ": "
        text = f"{location}{message}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)
