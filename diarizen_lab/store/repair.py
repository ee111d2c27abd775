"""Safe repairs of Hugging Face cache trees: nothing is deleted, and every change is proven by a hash.

A blob's name is the hash of its content (sha256 for LFS files, git's blob sha1 for the others), so a file
can be put back under a blob name exactly when its content hashes to that name:

- ``blobs/<name>.incomplete`` whose content hashes to ``<name>`` (and no ``blobs/<name>``) is renamed to
  ``blobs/<name>``: the download had finished;
- a plain file in a snapshot (a copy that dereferenced the symlinks) whose content hashes to the name of a
  blob that exists or that a snapshot symlink points to becomes that blob (a hard link, else a copy; the blob's
  old content was equal, or corrupt), and the snapshot file becomes a symlink to it again;
- a flattened link (a symlink that a copy tool wrote as a text file holding its target, see
  :func:`~diarizen_lab.store.hfcache.flattened_link`) becomes the symlink it stands for;
- with ``materialize``, snapshot symlinks are replaced by hard links to their blobs (copies where the file
  system has no hard links), e.g. before a copy with a tool that does not keep symlinks.

A broken symlink whose blob exists nowhere in the tree cannot be repaired offline; it is reported with its fix.
Repair writes only inside the tree: a snapshot, snapshot file or ``blobs/`` that links outside it is reported
and left alone (never read, hard-linked or written through), and trees that a manifest entry names outside the
store are not repaired at all (only the trees found under the folder given).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from diarizen_lab.store.checks import stat_check
from diarizen_lab.store.digest import digests, matches_name
from diarizen_lab.store.hfcache import (
    INCOMPLETE_SUFFIX,
    blob_of,
    files_under,
    find_cache_repos,
    flattened_link,
    is_inside,
)


@dataclass(frozen=True)
class RepairAction:
    """What repair did to one file: ``completed``, ``relinked``, ``linked-blob`` or ``materialized``; or, leaving
    it as it was, ``kept`` (nothing to prove it by) or ``unrepaired`` (a problem only a new copy fixes)."""

    path: Path
    action: str
    detail: str

    @property
    def changed(self) -> bool:
        return self.action not in ("kept", "unrepaired")

    def format(self, base: Path | None = None) -> str:
        path = self.path.relative_to(base) if base is not None and self.path.is_relative_to(base) else self.path
        return f"{self.action:<14}{path}: {self.detail}"


def repair_tree(root: str | Path, *, materialize: bool = False, dry_run: bool = False) -> list[RepairAction]:
    """Repair every cache tree under ``root`` (see the module documentation); ``dry_run`` changes nothing."""
    return [
        action
        for repo in find_cache_repos(Path(root))
        for action in repair_cache_repo(repo, materialize=materialize, dry_run=dry_run)
    ]


def repair_cache_repo(repo: Path, *, materialize: bool = False, dry_run: bool = False) -> list[RepairAction]:
    """Repair one cache tree (``models--org--name``)."""
    blobs = repo / "blobs"
    snapshots = repo / "snapshots"
    if not is_inside(blobs, repo):
        return [RepairAction(blobs, "unrepaired", f"links outside its cache tree, to {os.path.realpath(blobs)}")]
    files, outside = [], []
    for snapshot in sorted(path for path in snapshots.iterdir() if path.is_dir()):
        for file in [snapshot] if not is_inside(snapshot, repo) else files_under(snapshot):
            (files if is_inside(file, repo) else outside).append(file)
    referenced = {blob.name for file in files if (blob := blob_of(file)) is not None}
    available = {blob.name for blob in blobs.iterdir() if blob.is_file()} if blobs.is_dir() else set()
    blob_inodes = {_inode(blobs / name) for name in available}
    actions = [
        RepairAction(file, "unrepaired", f"links outside its cache tree, to {os.path.realpath(file)}; not followed")
        for file in outside
    ]

    for incomplete in sorted(blobs.glob(f"*{INCOMPLETE_SUFFIX}")) if blobs.is_dir() else []:
        name = incomplete.name.removesuffix(INCOMPLETE_SUFFIX)
        if name in available:
            continue
        if matches_name(incomplete, name):
            if not dry_run:
                os.replace(incomplete, blobs / name)
            available.add(name)
            detail = f"{incomplete.name} hashes to its name: renamed"
            actions.append(RepairAction(blobs / name, "completed", detail))
        else:
            actions.append(RepairAction(incomplete, "kept", f"does not hash to {name}: an unfinished download"))

    for file in files:
        if file.is_symlink() or not file.is_file() or _inode(file) in blob_inodes:
            continue  # a link, or a hard link to its blob (materialized)
        target = flattened_link(file, repo)
        if target is not None:
            if not dry_run:
                _symlink(file, target)
            detail = f"held the path of blobs/{target.name} as text (a flattened symlink): a symlink again"
            actions.append(RepairAction(file, "relinked", detail))
            continue
        digest = digests(file)
        name = next((name for name in digest.names() if name in referenced | available), None)
        if name is None:
            actions.append(RepairAction(
                file, "kept", "plain file whose hash names no blob of this tree (it works offline as it is)"
            ))
            continue
        if not dry_run:
            blobs.mkdir(exist_ok=True)
            _link_or_copy(file, blobs / name)
            if not materialize:
                _symlink(file, blobs / name)
        available.add(name)
        blob_inodes.add(_inode(file))
        verb = "is now the blob it was copied from" if materialize else "moved back to its blob and re-linked"
        actions.append(RepairAction(file, "linked-blob" if materialize else "relinked", f"{verb} ({name})"))

    for file in files:
        blob = blob_of(file)
        if file.is_symlink() and not file.exists() and not (blob is not None and blob.name in available):
            check = stat_check(file)
            actions.append(RepairAction(file, "unrepaired", f"{check.detail} (fix: {check.fix})"))
        elif materialize and file.is_symlink() and (file.exists() or blob is not None and blob.name in available):
            how = "hard link or copy" if dry_run else _link_or_copy(file.resolve(), file)
            detail = f"symlink replaced by a {how} of {blob or file.resolve()}"
            actions.append(RepairAction(file, "materialized", detail))
    return actions


def _inode(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


def _link_or_copy(source: Path, destination: Path) -> str:
    """Atomically make ``destination`` a hard link to ``source`` (a copy where hard links fail); say which."""
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.repair")
    try:
        try:
            os.link(source, temporary)
            how = "hard link"
        except OSError:
            shutil.copy2(source, temporary)
            how = "copy"
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    return how


def _symlink(file: Path, blob: Path) -> None:
    """Atomically replace ``file`` by a relative symlink to ``blob``."""
    temporary = file.with_name(f".{file.name}.{os.getpid()}.repair")
    try:
        os.symlink(os.path.relpath(blob, file.parent), temporary)
        os.replace(temporary, file)
    finally:
        temporary.unlink(missing_ok=True)
