"""Hugging Face hub cache trees, read offline (no hub client, no network).

A repository ``org/name`` is cached as::

    models--org--name/
        refs/main                     # text: the commit hash that the revision "main" names
        snapshots/<commit>/<file>     # symlink -> ../../blobs/<blob>
        blobs/<blob>                  # the content; <blob> = sha256 (LFS files) or git blob sha1
        blobs/<blob>.incomplete       # an unfinished download

A *copied* cache (``scp -r`` and some archivers dereference symlinks) holds plain files in ``snapshots/``;
it still loads offline, it only takes more space.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

REPO_PREFIX = "models--"
INCOMPLETE_SUFFIX = ".incomplete"


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


def snapshot_dir(repo: Path, revision: str = "main") -> Path:
    """The snapshot a revision (a ref name such as ``main``, or a commit hash) names in a cache tree."""
    snapshots = repo / "snapshots"
    if (snapshots / revision).is_dir():
        return snapshots / revision
    ref = repo / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
        if (snapshots / commit).is_dir():
            return snapshots / commit
        raise SnapshotError(f"{ref} names snapshot {commit}, which is not in {snapshots}")
    available = sorted(path.name for path in snapshots.iterdir() if path.is_dir()) if snapshots.is_dir() else []
    if revision == "main" and len(available) == 1:
        return snapshots / available[0]  # a copy that lost refs/: its only snapshot is unambiguous
    raise SnapshotError(
        f"{repo} has no refs/{revision} and {len(available)} snapshot(s) ({', '.join(available) or 'none'});"
        " name one with revision = \"<commit>\" in the manifest"
    )


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


def blob_of(path: Path) -> Path | None:
    """The blob a snapshot symlink points to, if it points into its repository's ``blobs/``."""
    target = link_target(path)
    if target is not None and target.parent.name == "blobs":
        return target
    return None
