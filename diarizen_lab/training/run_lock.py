"""One run per experiment directory: an exclusive lock on ``<exp>/<name>/.lock``.

The lock is an ``fcntl.flock`` on the lock file, held for the whole run by the main process of the launch (with
DDP every process of one launch shares the directory, and only the main process writes in it; the others learn
from it whether the lock was taken, so a refused launch stops on every process with the same message). The file
holds ``pid``, ``host`` and ``since`` of the holder, for the message a second run prints.

Why ``flock`` and not a pid file: the kernel releases a ``flock`` when its holder dies, however it dies (kill -9,
OOM killer, power loss of a node on the same file server), so a stale lock cannot block a later run and needs
no guess about whether a pid still names the same process (pids are reused, and a pid from another host means
nothing here). A lock file left by a killed run is therefore taken over at once; its content only says whose it
was. On NFS (v4, or v3 with lockd) Linux maps ``flock`` onto byte-range locks that the server arbitrates, so two
nodes cannot hold it together.

A run that stops releases the lock and deletes the file; it also deletes the experiment directory (and the
``exp_dir`` above it) when it created them and left them empty, so a run refused for a bad setting writes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from diarizen_lab.errors import DiarizenLabError

LOCK_FILE = ".lock"


class RunDirInUse(DiarizenLabError):
    """Another run holds the lock of this experiment directory."""


class RunLock:
    """The exclusive lock of one experiment directory, taken by :meth:`acquire` and given back by :meth:`release`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.previous_holder: dict[str, Any] | None = None
        """The holder recorded in a lock file left by a run that died (taken over by :meth:`acquire`)."""
        self._file = None
        self._created: list[Path] = []

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunDirInUse` naming its holder (pid, host, since)."""
        try:
            self._created = _make_dirs(self.run_dir)
            handle = open(self.path, "a+")
        except OSError as error:
            raise DiarizenLabError(
                f"{self.run_dir}: cannot write the experiment directory ({error.strerror}): choose a writable "
                "[meta] exp_dir"
            ) from None
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = _parse(handle.read())
                handle.close()
                self._remove_created_dirs()
                raise RunDirInUse(
                    f"{self.run_dir} is in use by another run ({describe_holder(holder)}; lock {self.path}): "
                    "wait for it to finish or stop it, or train into another [meta] name"
                ) from None
            # a holder that was releasing may have deleted the file we opened: lock the file that is there now
            if _same_file(handle, self.path):
                break
            handle.close()
            handle = open(self.path, "a+")
        handle.seek(0)
        self.previous_holder = _parse(handle.read())
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_this_holder()) + "\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        """Delete the lock file and give back the lock (deleting first: a waiting run then locks a new file)."""
        if self._file is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._file.close()
        self._file = None
        self._remove_created_dirs()

    def _remove_created_dirs(self) -> None:
        for directory in reversed(self._created):
            with contextlib.suppress(OSError):  # not empty: the run wrote something, keep it
                directory.rmdir()
        self._created = []


@contextlib.contextmanager
def hold_run_dir(run_dir: Path, accelerator: Accelerator) -> Iterator[RunLock]:
    """Hold the lock of ``run_dir`` for the duration of the block, on the main process of the launch.

    Every process of a (DDP) launch must enter it: the main process takes the lock and tells the others whether
    it got it, so all of them raise the same :class:`RunDirInUse` or all go on.
    """
    lock = RunLock(run_dir)
    refusal = [None]
    if accelerator.is_main_process:
        try:
            lock.acquire()
        except RunDirInUse as error:
            refusal = [str(error)]
        else:
            if lock.previous_holder is not None:
                print(
                    f"diarizen-lab: warning: took over the lock of a run that is no longer running "
                    f"({describe_holder(lock.previous_holder)})",
                    file=sys.stderr,
                    flush=True,
                )
    if accelerator.num_processes > 1:
        broadcast_object_list(refusal)
    if refusal[0] is not None:
        raise RunDirInUse(refusal[0])
    try:
        yield lock
    finally:
        lock.release()


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``pid 123 on host node1, since 2026-12-01 18:30:00 UTC`` (or what is known of it)."""
    if not holder:
        return "holder unknown: its lock file is empty"
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since {when}"


def _this_holder() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}


def _parse(text: str) -> dict[str, Any] | None:
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return None
    return holder if isinstance(holder, dict) else None


def _same_file(handle: Any, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(handle.fileno())
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the ones created, outermost first."""
    missing = []
    for path in (directory, *directory.parents):
        if path.exists():
            break
        missing.append(path)
    directory.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))
