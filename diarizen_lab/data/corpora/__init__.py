"""Preparation of public meeting corpora into data directories (``wav.scp``, ``rttm``, ``uem``)."""

from __future__ import annotations

from pathlib import Path

from diarizen_lab.errors import DiarizenLabError


def missing_files_error(corpus: str, missing: list[Path], total: int, fix: str) -> DiarizenLabError:
    """One error for the files of a corpus that are missing: how many, the first three, and the fix."""
    examples = ", ".join(str(path) for path in missing[:3])
    return DiarizenLabError(f"{len(missing)} of {total} {corpus} files are missing (e.g. {examples}) ({fix})")
