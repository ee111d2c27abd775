"""Atomic file and directory writes: a crash never leaves a half-written output behind.

A write that fails because the file system is full (or over quota, or read-only) removes its temporary file
and raises a one-line :class:`~diarizen_lab.errors.DiarizenLabError` naming the target; ``torch.save`` reports
a full disk as an ``unexpected pos`` RuntimeError, so a failed write is also taken for a full disk when less
than :data:`FULL_BELOW` bytes are left on the file system.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from diarizen_lab.errors import DiarizenLabError

#: Free bytes under which a failed write is taken for a full file system.
FULL_BELOW = 1 << 20
#: Write failures caused by the file system, not by the program: reported in one line.
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                       errno.EROFS: "read-only file system"}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry (after a rename) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; the result gets ordinary permissions
    try:
        with _full_disk_is_an_error(path):
            yield tmp_path
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file for writing that atomically replaces ``path`` when closed without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success, fsync its files and rename it onto ``path``.

    An existing ``path`` is replaced only after the new directory is complete (it is moved aside, the new one
    renamed in, then the old one deleted), so a crash at any point leaves a complete directory at ``path`` or
    at its previous state.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
    try:
        with _full_disk_is_an_error(path):
            yield tmp
            for file in tmp.rglob("*"):
                if file.is_file():
                    with open(file, "rb") as f:
                        os.fsync(f.fileno())
        fsync_dir(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _full_disk_is_an_error(path: Path) -> Iterator[None]:
    """Turn a write failure of a full (over-quota, read-only) file system into a one-line error naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        reason = ENVIRONMENT_ERRNOS.get(getattr(error, "errno", None))
        if reason is None and shutil.disk_usage(path.parent).free < FULL_BELOW:
            reason = "no space left on device"
        if reason is None:
            raise
        free = shutil.disk_usage(path.parent).free
        raise DiarizenLabError(
            f"{path}: cannot write it, {reason} ({free} bytes free on its file system): free some space "
            "and run the command again (a training run continues with --resume; nothing was half-written)"
        ) from None


def require_writable_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Check that ``path`` is, or can be created as, a directory this process can write into; create nothing.

    The nearest existing ancestor must be a directory where a file can be created (tried with a temporary file,
    removed at once): permissions, read-only mounts and full disks are found before any work is done.
    """
    path = Path(path)
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        raise DiarizenLabError(f"{path}: cannot be the {what}: {existing} exists and is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise DiarizenLabError(
            f"{path}: cannot write the {what} ({error.strerror} in {existing}): choose a writable location"
        ) from None
    return path
