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


def describe(error: BaseException, limit: int = 160) -> str:
    """The gist of a library's exception, for a one-line message: its first line, cut after the first sentence
    when longer than ``limit`` characters (torch's messages run on with advice that does not apply), else the
    exception's type name.

    >>> describe(RuntimeError("PytorchStreamReader failed reading zip archive. This is an internal error. " * 3))
    'PytorchStreamReader failed reading zip archive.'
    """
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if len(text) > limit and ". " in text:
        text = text[: text.index(". ") + 1]
    return text[:limit]
