"""Hugging Face hub cache trees, read offline (no hub client, no network).

A repository ``org/name`` is cached as::

    models--org--name/
        refs/main                     # text: the commit hash that the revision "main" names
        snapshots/<commit>/<file>     # symlink -> ../../blobs/<blob>
        blobs/<blob>                  # the content; <blob> = sha256 (LFS files) or git blob sha1
        blobs/<blob>.incomplete       # an unfinished download

A *copied* cache (``scp -r`` and some archivers dereference symlinks) holds plain files in ``snapshots/``;
it still loads offline, it only takes more space. Tools that cannot store symlinks at all may instead write
each one as a small text file holding its target, ``../../blobs/<blob>`` (a *flattened link*,
:func:`flattened_link`): the store reads the blob it names, and ``checkpoints repair`` makes it a symlink again.

Nothing read from a tree leads out of it: a revision and the commit a ref names must be plain names of
``snapshots/`` folders (not empty, no ``/``, not ``..``), the snapshot must lie in the tree, and a snapshot file
that links outside the tree is reported, never followed (:func:`links_outside`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

REPO_PREFIX = "models--"
INCOMPLETE_SUFFIX = ".incomplete"
FLATTENED_LINK_MAX_BYTES = 1024
"""A flattened link is a text file of at most this size (its target path)."""


class SnapshotError(LookupError):
    """A cache tree whose revision cannot be chosen (missing ref, missing snapshot, several snapshots)."""


def default_hf_cache() -> Path:
    """The hub cache that ``huggingface_hub`` uses, by its documented environment variables (read now)."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def repo_folder_name(repo_id: str) -> str:
    """``"microsoft/wavlm-large"`` -> ``"models--microsoft--wavlm-large"``."""
    return REPO_PREFIX + repo_id.replace("/", "--")


def repo_id_of(repo: Path) -> str:
    """The repository id of a cache tree, from its folder name (the folder name itself if it is not standard)."""
    name = repo.name
    return name[len(REPO_PREFIX):].replace("--", "/") if name.startswith(REPO_PREFIX) else name


def is_cache_repo(path: Path) -> bool:
    """Whether ``path`` is the root of a cached repository: ``snapshots/`` beside ``blobs/`` or ``refs/``, or
    inside a ``models--*`` folder."""
    if not (path / "snapshots").is_dir():
        return False
    return path.name.startswith(REPO_PREFIX) or (path / "blobs").is_dir() or (path / "refs").is_dir()


def find_cache_repos(root: Path) -> list[Path]:
    """Every cached repository under ``root`` (not following directory symlinks, not looking inside one)."""
    found = []
    for directory, subdirectories, _ in os.walk(root):
        if is_cache_repo(Path(directory)):
            found.append(Path(directory))
            subdirectories.clear()
            continue
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
    return sorted(found)


def is_inside(path: Path, tree: Path) -> bool:
    """Whether ``path`` lies in ``tree`` once every symlink of both is followed (a broken link: its target)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(tree))


def links_outside(folder: Path, tree: Path) -> list[Path]:
    """The files under ``folder`` (a snapshot, or a folder in one) that lead out of the cache tree ``tree``."""
    return [file for file in files_under(folder) if not is_inside(file, tree)]


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def snapshot_dir(repo: Path, revision: str = "main") -> Path:
    """The snapshot a revision (a ref name such as ``main``, or a commit hash) names in a cache tree.

    Raises :class:`SnapshotError` when the revision or the commit its ref names is not a plain name, when the
    ref is empty, or when the snapshot is missing, ambiguous or lies outside the tree.
    """
    snapshots = repo / "snapshots"
    if not all(_plain_name(part) for part in revision.split("/")):
        raise SnapshotError(f"revision {revision!r} is not a ref or commit name (it would leave {repo})")
    if "/" not in revision and (snapshots / revision).is_dir():
        return _inside(snapshots / revision, repo)
    ref = repo / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
        if not commit:
            raise SnapshotError(f"{ref} is empty; it should hold the commit hash of a folder of {snapshots}")
        if not _plain_name(commit):
            raise SnapshotError(f"{ref} names {commit!r}, which is not a commit hash (it would leave {snapshots})")
        if (snapshots / commit).is_dir():
            return _inside(snapshots / commit, repo)
        raise SnapshotError(f"{ref} names snapshot {commit}, which is not in {snapshots}")
    available = sorted(path.name for path in snapshots.iterdir() if path.is_dir()) if snapshots.is_dir() else []
    if revision == "main" and len(available) == 1:
        return _inside(snapshots / available[0], repo)  # a copy that lost refs/: its only snapshot is unambiguous
    raise SnapshotError(
        f"{repo} has no refs/{revision} and {len(available)} snapshot(s) ({', '.join(available) or 'none'});"
        " name one with revision = \"<commit>\" in the manifest"
    )


def _inside(snapshot: Path, repo: Path) -> Path:
    if not is_inside(snapshot, repo):
        raise SnapshotError(f"snapshot {snapshot} links outside its cache tree, to {os.path.realpath(snapshot)}")
    return snapshot


def files_under(directory: Path) -> Iterator[Path]:
    """Every file (plain file or symlink, broken or not) under a directory such as a snapshot, sorted."""
    for folder, subfolders, files in os.walk(directory):
        subfolders.sort()
        for name in sorted(files):
            yield Path(folder) / name


def link_target(path: Path) -> Path | None:
    """Where a symlink points (normalized, whether or not it exists); ``None`` for anything else."""
    if not path.is_symlink():
        return None
    return Path(os.path.normpath(path.parent / os.readlink(path)))


def tree_of(path: Path) -> Path | None:
    """The cache tree a snapshot file lies in (the folder above ``snapshots/``), or ``None``."""
    return next((parent.parent for parent in path.parents if parent.name == "snapshots"), None)


def flattened_link(path: Path, tree: Path | None = None) -> Path | None:
    """The blob that a flattened link names, or ``None`` if ``path`` is not one.

    A flattened link is a regular file in a snapshot of at most :data:`FLATTENED_LINK_MAX_BYTES` whose text
    is one relative path leading to an existing file directly in ``blobs/`` of its own tree (``tree``,
    default :func:`tree_of`), once every symlink is followed: nothing outside the tree is ever named.
    """
    tree = tree if tree is not None else tree_of(path)
    if tree is None or path.is_symlink() or not path.is_file() or path.stat().st_size > FLATTENED_LINK_MAX_BYTES:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text or "\n" in text or "\0" in text or os.path.isabs(text):
        return None
    target = Path(os.path.normpath(path.parent / text))
    blobs = Path(os.path.realpath(tree / "blobs"))
    real = Path(os.path.realpath(target))
    if real.parent != blobs or not blobs.is_relative_to(os.path.realpath(tree)) or not real.is_file():
        return None
    return target


def blob_of(path: Path) -> Path | None:
    """The blob a snapshot symlink points to, if it points into its repository's ``blobs/``."""
    target = link_target(path)
    if target is not None and target.parent.name == "blobs":
        return target
    return None
