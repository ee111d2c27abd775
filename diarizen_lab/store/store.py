"""The offline checkpoint store: pretrained assets found by name in a local folder, never over the network.

A name resolves, first match wins, to:

1. the entry of that name in ``<root>/manifest.toml`` (see :mod:`diarizen_lab.store.manifest`);
2. ``<root>/<name>``, ``<root>/<name>.pt`` or ``<root>/<name>.safetensors``: a file, a model folder
   (``config.json`` + ``model.safetensors``/``pytorch_model.bin``; pyannote's ``config.yaml`` +
   ``pytorch_model.bin``; a PLDA folder with ``xvec_transform.npz`` + ``plda.npz``) or a cache tree;
3. for a known name (:data:`KNOWN_ASSETS`) or a repository id ``org/name[/subfolder]``: the Hugging Face cache
   tree ``models--org--name`` in ``<root>``, ``<root>/hub`` or the hub cache (``$HF_HUB_CACHE``, ...).

A cache tree resolves to its snapshot at ``refs/main`` (or the manifest's ``revision``), plus ``subfolder``.
The root is ``--checkpoint-dir``, else ``$DIARIZEN_LAB_CHECKPOINTS``, else ``./checkpoints``.

Resolution reads only what the store's folder holds, except where a manifest entry names a file or folder
elsewhere (that is what entries are for: a shared copy on another disk). Inside a cache tree, whether in the
store or named by an entry, nothing leads out of the tree: a ``revision``, ``subfolder`` or the content of
``refs/main`` that would leave it, or a snapshot file linking outside it, makes the asset unusable (see
:mod:`diarizen_lab.store.hfcache`). A file that is a flattened link resolves to the blob it names; a folder
holding one is refused until ``checkpoints repair`` re-links it (its readers would read the link's text). A
found asset's files are hashed against the manifest's ``sha256`` and, when at most
:data:`~diarizen_lab.store.checks.HASH_LIMIT_BYTES`, against their blob names. Resolution never writes.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.store.checks import PLDA_ARRAYS, content_check, stat_check
from diarizen_lab.store.hfcache import (
    REPO_PREFIX,
    SnapshotError,
    default_hf_cache,
    files_under,
    flattened_link,
    is_cache_repo,
    is_inside,
    links_outside,
    repo_folder_name,
    repo_id_of,
    snapshot_dir,
    tree_of,
)
from diarizen_lab.store.manifest import MANIFEST_NAME, ManifestEntry, load_manifest

ENV_VARIABLE = "DIARIZEN_LAB_CHECKPOINTS"
CONVENTION_SUFFIXES = ("", ".pt", ".safetensors")
HF_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class KnownAsset:
    """Where the hub publishes an asset that recipes refer to by a short name."""

    repo_id: str
    kind: str
    subfolder: str | None = None


#: short names -> hub repositories, for finding assets in Hugging Face cache trees
KNOWN_ASSETS: dict[str, KnownAsset] = {
    "wavlm-base": KnownAsset("microsoft/wavlm-base", "wavlm"),
    "wavlm-base-plus": KnownAsset("microsoft/wavlm-base-plus", "wavlm"),
    "wavlm-large": KnownAsset("microsoft/wavlm-large", "wavlm"),
    "wespeaker-resnet34-lm": KnownAsset("pyannote/wespeaker-voxceleb-resnet34-LM", "embedding"),
    # pyannote.audio 4's VBx clustering reads xvec_transform.npz and plda.npz from this folder
    "plda": KnownAsset("pyannote/speaker-diarization-community-1", "plda", subfolder="plda"),
}
#: a released DiariZen model folder (config.toml + pytorch_model.bin, optional plda/), e.g. BUT-FIT/diarizen-*
DIARIZEN_RELEASED = "diarizen-released"
_REPO_ID = re.compile(r"[\w][\w.-]*/[\w.-]+(/[^/].*)?")


class AssetNotFoundError(DiarizenLabError):
    """An asset name or path that does not resolve; the message names every path searched and the fix."""

    def __init__(self, name: str, searched: list[str], fix: str, reason: str = "not found") -> None:
        self.name = name
        self.searched = list(searched)
        self.fix = fix
        super().__init__(f"asset '{name}' {reason}; searched: {'; '.join(searched) or 'nothing'} (fix: {fix})")


class BrokenAssetError(AssetNotFoundError):
    """An asset that was found but cannot be used: a file is missing, a broken symlink, or empty."""


def default_checkpoint_dir() -> Path:
    """``$DIARIZEN_LAB_CHECKPOINTS`` if set, else ``./checkpoints`` (absolute)."""
    return Path(os.environ.get(ENV_VARIABLE) or "checkpoints").expanduser().absolute()


def detect_layout(path: Path) -> str:
    """What a file or folder looks like: torch, safetensors, npz, file, hf-model, diarizen-released,
    pyannote-model, plda, ..."""
    if not path.is_dir():
        return {".safetensors": "safetensors", ".npz": "npz"}.get(
            path.suffix, "torch" if path.suffix in (".pt", ".pth", ".bin", ".ckpt") else "file"
        )
    names = {child.name for child in path.iterdir()}
    if set(PLDA_ARRAYS) <= names:
        return "plda"
    if "config.json" in names:
        return "hf-model"
    if {"config.toml", "pytorch_model.bin"} <= names:
        return DIARIZEN_RELEASED
    if "pytorch_model.bin" in names:
        return "pyannote-model"
    if "config.yaml" in names:
        return "pyannote-pipeline"
    if is_cache_repo(path):
        return "hf-cache"
    return "directory"


@dataclass(frozen=True)
class Asset:
    """A resolved asset: a file or a folder, with its kind and where it was found."""

    name: str
    path: Path
    kind: str
    #: how it was found: "path", "manifest", "folder" (a convention name in the root), or "hf-cache"
    source: str
    sha256: str | dict[str, str] | None = None

    def files(self) -> list[Path]:
        return list(files_under(self.path)) if self.path.is_dir() else [self.path]

    def size(self) -> int:
        """Bytes of content (symlinks followed; broken ones count as 0)."""
        return sum(file.stat().st_size for file in self.files() if file.exists())

    def expected_sha256(self, file: Path) -> str | None:
        if isinstance(self.sha256, dict):
            return self.sha256.get(file.relative_to(self.path).as_posix()) if file != self.path else None
        return self.sha256 if file == self.path else None

    def missing_files(self) -> list[str]:
        """Files the asset's kind needs that its folder lacks (broken symlinks count as present here)."""
        if not self.path.is_dir():
            return []
        names = {child.name for child in self.path.iterdir()}
        layout = detect_layout(self.path)
        if self.kind == "plda" or layout == "plda":
            return [name for name in PLDA_ARRAYS if name not in names]
        if layout == "hf-model" and not names & set(HF_WEIGHT_FILES):
            return [" or ".join(HF_WEIGHT_FILES[:2])]
        if self.kind in ("embedding", "segmentation") and "pytorch_model.bin" not in names:
            return ["pytorch_model.bin"]
        return []


class CheckpointStore:
    """Pretrained assets in a local folder (see the module documentation for the resolution order).

    Args:
        root: the store's folder (default: :func:`default_checkpoint_dir`).
        search_hf_cache: also look in the user's Hugging Face hub cache for known names and repository ids.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, search_hf_cache: bool = True) -> None:
        self.root = Path(root).expanduser().absolute() if root is not None else default_checkpoint_dir()
        self.hf_cache = default_hf_cache() if search_hf_cache else None
        self.manifest_path = self.root / MANIFEST_NAME

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.root)!r})"

    @functools.cached_property
    def manifest(self) -> dict[str, ManifestEntry]:
        """The manifest's entries (empty without a manifest); a malformed manifest raises InputError."""
        return load_manifest(self.manifest_path) if self.manifest_path.is_file() else {}

    def cache_folders(self) -> list[Path]:
        """Where Hugging Face cache trees are looked for, in order."""
        folders = [self.root, self.root / "hub"]
        if self.hf_cache is not None and self.hf_cache not in folders:
            folders.append(self.hf_cache)
        return folders

    def resolve(self, name_or_path: str | os.PathLike) -> Path:
        """The path of an asset (see :meth:`find`)."""
        return self.find(name_or_path).path

    def find(self, name_or_path: str | os.PathLike) -> Asset:
        """Resolve an asset name, or return an existing path as is (a cache tree root: its snapshot).

        Raises:
            AssetNotFoundError: nothing matches; the message lists every path searched and the fix.
            BrokenAssetError: a named asset was found but one of its files is missing, a broken symlink
                or empty (nothing is read: run ``checkpoints verify`` for a full check).
        """
        asset = self.locate(name_or_path)
        return asset if asset.source == "path" else self._usable(asset)

    def locate(self, name_or_path: str | os.PathLike) -> Asset:
        """Like :meth:`find`, without checking the files of what was found."""
        name = str(name_or_path)
        given = Path(name).expanduser()
        if given.exists():
            searched = [str(given)]
            path = self._open_tree(given, "main", None, searched)
            if path is None:
                raise AssetNotFoundError(
                    name, searched, "pass the snapshot folder itself", reason="has no snapshot to use"
                )
            return Asset(name, path, detect_layout(path), "path")
        if given.is_symlink():
            check = stat_check(given)
            raise BrokenAssetError(name, [str(given)], check.fix, reason=f"is unusable: {check.detail}")

        searched: list[str] = []
        known = KNOWN_ASSETS.get(name)
        if name in self.manifest:
            entry = self.manifest[name]
            searched.append(f"{entry.path} (from {self.manifest_path}:{entry.line})")
            path = self._open_tree(entry.path, entry.revision or "main", entry.subfolder, searched)
            if path is None:
                raise AssetNotFoundError(
                    name, searched, f"copy the asset to {entry.path} or correct [assets.{name}] in "
                    f"{self.manifest_path}:{entry.line}",
                )
            kind = entry.kind or (known.kind if known else detect_layout(path))
            return Asset(name, path, kind, "manifest", entry.sha256)

        if not given.is_absolute():
            for suffix in CONVENTION_SUFFIXES:
                candidate = self.root / f"{name}{suffix}"
                searched.append(str(candidate))
                path = self._open_tree(candidate, "main", None, searched)
                if path is not None:
                    kind = known.kind if known else detect_layout(path)
                    return Asset(name, path, kind, "folder")

        repo = self._repository(name)
        if repo is not None:
            for folder in self.cache_folders():
                candidate = folder / repo_folder_name(repo.repo_id)
                searched.append(str(candidate))
                path = self._open_tree(candidate, "main", repo.subfolder, searched)
                if path is not None:
                    return Asset(name, path, repo.kind or detect_layout(path), "hf-cache")
        raise AssetNotFoundError(name, searched, self._fix(name, repo))

    def names(self) -> list[str]:
        """Every asset name the store knows: manifest entries, known names, and what lies in the root."""
        names = dict.fromkeys([*self.manifest, *KNOWN_ASSETS])
        by_repo = {known.repo_id: name for name, known in KNOWN_ASSETS.items() if known.subfolder is None}
        claimed = [entry.path for entry in self.manifest.values()]
        if not self.root.is_dir():
            return list(names)
        for child in sorted(self.root.iterdir()):
            if child.name.startswith(".") or child.name == MANIFEST_NAME:
                continue
            if any(path == child or path.is_relative_to(child) for path in claimed):
                continue
            trees = [child] if child.name.startswith(REPO_PREFIX) else []
            if child.name == "hub" and child.is_dir():
                trees = sorted(child.glob(f"{REPO_PREFIX}*"))
            for tree in trees:
                names.setdefault(by_repo.get(repo_id_of(tree), repo_id_of(tree)))
            if not trees:
                names.setdefault(child.stem if child.suffix in CONVENTION_SUFFIXES[1:] else child.name)
        return list(names)

    def list(self) -> list[Asset]:
        """Every asset that resolves (see :meth:`names`); those that do not are left out."""
        assets = []
        for name in self.names():
            try:
                assets.append(self.find(name))
            except AssetNotFoundError:
                continue
        return assets

    def _open_tree(self, path: Path, revision: str, subfolder: str | None, searched: list[str]) -> Path | None:
        """``path`` itself, or for a cache tree its snapshot (+ subfolder); ``None`` (reason noted) if absent."""
        if not (path.exists() or path.is_symlink()):
            return None
        tree = path if is_cache_repo(path) else None
        if tree is not None:
            try:
                path = snapshot_dir(tree, revision)
            except SnapshotError as error:
                searched[-1] += f" ({error})"
                return None
        if subfolder:
            if not is_inside(path / subfolder, path):
                searched[-1] += f" (subfolder {subfolder!r} leads out of {path})"
                return None
            if not (path / subfolder).exists():
                searched[-1] += f" (no {subfolder}/ in {path})"
                return None
            path = path / subfolder
        outside = links_outside(path, tree) if tree is not None and path.is_dir() else []
        if outside:
            searched[-1] += f" ({outside[0]} links outside its cache tree, to {os.path.realpath(outside[0])})"
            return None
        if path.is_file():
            return flattened_link(path) or path  # read through a flattened link to its blob
        flattened = next((file for file in files_under(path) if flattened_link(file)), None)
        if flattened is not None:
            searched[-1] += (
                f" ({flattened} is a symlink flattened into a text file, which a folder's reader would read as "
                f"content: `diarizen-lab checkpoints repair {tree_of(flattened)}` makes it a symlink again)"
            )
            return None
        return path

    def _usable(self, asset: Asset) -> Asset:
        missing = asset.missing_files()
        if missing:
            raise BrokenAssetError(
                asset.name, [str(asset.path)], f"copy {', '.join(missing)} into {asset.path}",
                reason=f"is incomplete: {asset.path} lacks {', '.join(missing)}",
            )
        problems = [check for check in map(stat_check, asset.files()) if check is not None]
        problems = problems or [
            check for file in asset.files() if not (check := content_check(file, asset.expected_sha256(file))).ok
        ]
        if problems:
            first = problems[0]
            more = f" and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
            raise BrokenAssetError(
                asset.name, [str(asset.path)],
                f"{first.fix}; `diarizen-lab checkpoints verify {self.root}` lists every problem",
                reason=f"is unusable: {first.path} is {first.status.value} ({first.detail}){more}",
            )
        return asset

    @staticmethod
    def _repository(name: str) -> KnownAsset | None:
        if name in KNOWN_ASSETS:
            return KNOWN_ASSETS[name]
        if _REPO_ID.fullmatch(name):
            parts = name.split("/")
            return KnownAsset("/".join(parts[:2]), kind="", subfolder="/".join(parts[2:]) or None)
        return None

    def _fix(self, name: str, repo: KnownAsset | None) -> str:
        fix = (
            f"put it at {self.root / name}, or add [assets.{name}] with path = \"...\" to {self.manifest_path}, "
            f"or point --checkpoint-dir / ${ENV_VARIABLE} at the folder that holds it"
        )
        if repo is not None:
            fix = (
                f"copy the Hugging Face cache tree {repo_folder_name(repo.repo_id)} into {self.root} with cp -a "
                f"or rsync -a (fetch it where there is network with `hf download {repo.repo_id}`), or {fix}"
            )
        return fix


def resolve_asset(name_or_path: str | os.PathLike, checkpoint_dir: str | os.PathLike | None = None) -> Path:
    """The path of a pretrained asset: an existing path as is (a cache tree root: its ``refs/main`` snapshot),
    else the asset of that name in the store (``checkpoint_dir``, default :func:`default_checkpoint_dir`).

    Raises :class:`AssetNotFoundError` naming the asset, every path searched, and the fix.
    """
    return CheckpointStore(checkpoint_dir).resolve(name_or_path)
