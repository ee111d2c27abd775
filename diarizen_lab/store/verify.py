"""Verification of a whole checkpoint folder: every asset it holds and every Hugging Face cache tree under it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from diarizen_lab.store.checks import FileCheck, Status, check_file
from diarizen_lab.store.hfcache import (
    SnapshotError,
    files_under,
    find_cache_repos,
    is_inside,
    link_target,
    repo_id_of,
    snapshot_dir,
)
from diarizen_lab.store.store import KNOWN_ASSETS, Asset, AssetNotFoundError, CheckpointStore

PLAIN_COPY_NOTE = "plain copy, not a link into blobs/ (works offline; `checkpoints repair` re-links it)"


@dataclass
class Section:
    """The checks of one asset or one cache tree; ``base`` is the folder their paths are shown relative to."""

    title: str
    base: Path
    checks: list[FileCheck] = field(default_factory=list)

    @property
    def problems(self) -> list[FileCheck]:
        return [check for check in self.checks if not check.ok]


def verify_store(root: str | Path, *, hash_files: bool = False) -> list[Section]:
    """Check every manifest entry and named asset in ``root``, then every cache tree under it.

    Args:
        root: the checkpoint folder.
        hash_files: hash every cache blob and compare with its name; by default only blobs of at most
            :data:`~diarizen_lab.store.checks.HASH_LIMIT_BYTES` (manifest sha256 values are always checked).

    A snapshot file (or snapshot) that links outside its cache tree is reported, never read.

    Raises:
        InputError: the manifest cannot be parsed.
    """
    store = CheckpointStore(root, search_hf_cache=False)
    sections: list[Section] = []
    seen: set[Path] = set()

    def add(section: Section) -> None:
        section.checks = [check for check in section.checks if check.path not in seen]
        seen.update(check.path for check in section.checks)
        if section.checks:
            sections.append(section)

    for name in store.names():
        try:
            asset = store.locate(name)
        except AssetNotFoundError as error:
            if name in store.manifest:
                path = store.manifest[name].path
                check = FileCheck(path, Status.MISSING, "; ".join(error.searched), error.fix)
                add(Section(f"asset {name}", store.root, [check]))
            continue
        if asset.source == "hf-cache" and name not in KNOWN_ASSETS:
            continue  # a whole cached repository: checked with the cache trees below
        base = asset.path if asset.path.is_dir() else store.root
        add(Section(f"asset {name} ({asset.kind}): {asset.path}", base, _asset_checks(asset, hash_files)))
    for repo in find_cache_repos(store.root):
        add(Section(f"cache {repo_id_of(repo)}: {repo}", repo, _cache_checks(repo, hash_files)))
    return sections


def _asset_checks(asset: Asset, hash_files: bool) -> list[FileCheck]:
    checks = [
        FileCheck(asset.path, Status.MISSING, f"lacks {name}, which a {asset.kind} folder needs", "copy it there")
        for name in asset.missing_files()
    ]
    if isinstance(asset.sha256, str) and asset.path.is_dir():
        checks.append(FileCheck(
            asset.path, Status.HASH_MISMATCH, "the manifest gives one sha256 but the asset is a folder",
            'give sha256 as a table: sha256 = { "file" = "<digest>", ... }',
        ))
    if isinstance(asset.sha256, dict):
        for relative in asset.sha256:
            file = asset.path / relative
            if not (file.exists() or file.is_symlink()):
                checks.append(FileCheck(file, Status.MISSING, "listed in the manifest's sha256 table", "copy it"))
    for file in asset.files():
        checks.append(_with_note(check_file(file, sha256=asset.expected_sha256(file), verify_blob=hash_files or None)))
    return checks


def _cache_checks(repo: Path, hash_files: bool) -> list[FileCheck]:
    checks = []
    refs = repo / "refs"
    for ref in files_under(refs) if refs.is_dir() else []:
        try:
            snapshot_dir(repo, ref.relative_to(refs).as_posix())
        except SnapshotError as error:
            checks.append(FileCheck(
                ref, Status.MISSING, str(error).replace(f"{ref} ", "", 1),
                "re-copy that snapshot, or the whole tree with cp -a or rsync -a",
            ))
    snapshots = sorted(path for path in (repo / "snapshots").iterdir() if path.is_dir())
    if not snapshots:
        checks.append(FileCheck(repo / "snapshots", Status.MISSING, "no snapshot", "re-copy the cache tree"))
    for snapshot in snapshots:
        if not is_inside(snapshot, repo):
            checks.append(_outside(snapshot))
            continue
        for file in files_under(snapshot):
            inside = is_inside(file, repo)
            checks.append(_with_note(check_file(file, verify_blob=hash_files or None)) if inside else _outside(file))
    return checks


def _outside(path: Path) -> FileCheck:
    return FileCheck(
        path, Status.OUTSIDE, f"links outside its cache tree, to {os.path.realpath(path)}; not followed",
        "a snapshot links only into its own blobs/: re-copy the cache tree with cp -a or rsync -a",
    )


def _with_note(check: FileCheck) -> FileCheck:
    """Mark a plain file inside a cache snapshot, where a symlink into ``blobs/`` is expected."""
    in_snapshot = "snapshots" in check.path.parts
    if (
        check.status is Status.OK and in_snapshot
        and link_target(check.path) is None and check.path.stat().st_nlink == 1
    ):
        return FileCheck(check.path, check.status, PLAIN_COPY_NOTE)
    return check
