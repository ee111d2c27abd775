"""Checks of one checkpoint file: present, not a broken symlink, not empty, right hash, readable.

A check is fast: it hashes when a hash is given or asked for, and by default a Hugging Face blob (whose name is
the sha256 or git sha1 of its content) of at most :data:`HASH_LIMIT_BYTES`; "readable" means the container
parses — a torch file is opened memory-mapped with ``weights_only=True`` (the zip directory and the pickle, not
the tensor data; a pickle naming Python objects other than weights is reported ``unsafe-pickle``), a safetensors
file by its header, an ``.npz`` by its zip directory, JSON/YAML/TOML by parsing the text.
"""

from __future__ import annotations

import enum
import json
import os
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from diarizen_lab.store.digest import matches_name, sha256_of
from diarizen_lab.store.hfcache import INCOMPLETE_SUFFIX, blob_of, flattened_link, link_target
from diarizen_lab.utils.torch_files import UnsafePickleError, load_torch_file

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
#: arrays that pyannote's PLDA (``pyannote.audio.utils.vbx.vbx_setup``) reads from each file
PLDA_ARRAYS = {"xvec_transform.npz": ("mean1", "mean2", "lda"), "plda.npz": ("mu", "tr", "psi")}

RECOPY = "copy it again (compare its size with the source)"
HASH_LIMIT_BYTES = 512 * 2**20
"""Blobs up to this size (about a second of sha256) are hashed against their names by default: the weights of
WavLM Base+ (378 MB), the speaker embedding and every config. Larger ones (WavLM Large) only with ``--hash``."""


class Status(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"
    BROKEN_SYMLINK = "broken-symlink"
    EMPTY = "zero-byte"
    HASH_MISMATCH = "hash-mismatch"
    UNREADABLE = "unreadable"
    UNSAFE = "unsafe-pickle"
    OUTSIDE = "links-outside"
    FLATTENED = "flattened-link"


@dataclass(frozen=True)
class FileCheck:
    """The outcome of checking one file; ``detail`` says what was seen, ``fix`` what to do about it."""

    path: Path
    status: Status
    detail: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (Status.OK, Status.FLATTENED)

    def format(self, base: Path | None = None) -> str:
        """One line: status, path (relative to ``base`` when inside it), detail and fix."""
        path = self.path
        if base is not None and path.is_relative_to(base):
            path = path.relative_to(base)
        line = f"{self.status.value:<16}{path}"
        if self.detail:
            line += f": {self.detail}"
        if self.fix:
            line += f" (fix: {self.fix})"
        return line


def _first_line(error: BaseException) -> str:
    """The gist of an error message: its first line, cut after the first sentence when that is long."""
    text = (str(error).strip() or type(error).__name__).splitlines()[0]
    if len(text) > 120 and ". " in text:
        text = text[: text.index(". ") + 1]
    return text[:200]


def _missing_blob_fix(blob: Path) -> str:
    incomplete = blob.with_name(blob.name + INCOMPLETE_SUFFIX)
    if incomplete.exists():
        return (
            f"blobs/{incomplete.name} is an unfinished download: `diarizen-lab checkpoints repair "
            f"{blob.parent.parent}` completes it if its content matches, else {_recopy_blob(blob)}"
        )
    return _recopy_blob(blob)


def _recopy_blob(blob: Path) -> str:
    return (
        f"re-copy blob {blob.name} into {blob.parent} from a machine where it exists "
        "(cp -a or rsync -a keep the snapshot symlinks; do not dereference them with scp -r)"
    )


def stat_check(path: Path) -> FileCheck | None:
    """The problem a ``stat`` reveals (missing, broken symlink, not a file, empty, unreadable), or ``None``."""
    path = Path(path)
    blob = blob_of(path)
    if path.is_symlink() and not path.exists():
        target = link_target(path)
        if blob is not None:
            detail, fix = f"points to missing blobs/{blob.name}", _missing_blob_fix(blob)
        else:
            detail, fix = f"points to missing {target}", f"restore {target} or re-point the link"
        return FileCheck(path, Status.BROKEN_SYMLINK, detail, fix)
    if not path.exists():
        return FileCheck(path, Status.MISSING, "no such file", "copy the file to this path or correct the path")
    if not path.is_file():
        return FileCheck(path, Status.UNREADABLE, "not a regular file", "replace it by the file")
    if path.stat().st_size == 0:
        fix = _missing_blob_fix(blob) if blob is not None else f"the copy was interrupted: {RECOPY}"
        return FileCheck(path, Status.EMPTY, "0 bytes", fix)
    if not os.access(path, os.R_OK):
        return FileCheck(path, Status.UNREADABLE, "permission denied", "make it readable (chmod a+r)")
    return None


def _torch_error(path: Path) -> str | None:
    """Why a torch file cannot be read; raises :class:`UnsafePickleError` for a pickle that names code."""
    try:
        # mmap reads the zip directory and the pickle but no tensor data (legacy non-zip files cannot be mapped)
        load_torch_file(path, mmap=zipfile.is_zipfile(path))
    except UnsafePickleError:
        raise
    except Exception as error:  # torch reports corrupt files as RuntimeError, EOFError, UnpicklingError, ...
        return _first_line(error)
    return None


def _safetensors_error(path: Path) -> str | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy"):  # validates the header against the file size
            pass
    except SafetensorError as error:
        return _first_line(error)
    return None


def _npz_error(path: Path) -> str | None:
    import numpy as np

    try:
        with np.load(path) as arrays:
            names = set(arrays.files)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        return _first_line(error)
    missing = [name for name in PLDA_ARRAYS.get(path.name, ()) if name not in names]
    if missing:
        return f"lacks array(s) {', '.join(missing)} that pyannote's PLDA needs"
    return None


def _text_error(path: Path) -> str | None:
    try:
        text = path.read_text()
        if path.suffix == ".json":
            json.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            yaml.safe_load(text)
        elif path.suffix == ".toml":
            tomllib.loads(text)
    except Exception as error:  # each parser has its own error types; any of them means "cannot parse"
        return _first_line(error)
    return None


def read_error(path: Path, name: str | None = None) -> str | None:
    """Why the file's format cannot be parsed, or ``None``; the type is told by the (snapshot) file ``name``
    (default: the file's own name)."""
    suffix = Path(name or path.name).suffix
    if suffix in TORCH_SUFFIXES:
        return _torch_error(path)
    if suffix == ".safetensors":
        return _safetensors_error(path)
    if suffix == ".npz":
        return _npz_error(path)
    if suffix in (".json", ".yaml", ".yml", ".toml"):
        return _text_error(path)
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as error:
        return _first_line(error)
    return None


def content_check(path: Path, sha256: str | None = None, *, verify_blob: bool | None = None) -> FileCheck:
    """The hash checks of a file that :func:`stat_check` passed (see :func:`check_file` for the arguments)."""
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256.lower():
            return FileCheck(
                path, Status.HASH_MISMATCH, f"sha256 is {actual}, expected {sha256}",
                f"{RECOPY}, or update sha256 in the manifest if you replaced the file on purpose",
            )
    blob = blob_of(path)
    if blob is not None and verify_blob is None:
        verify_blob = blob.stat().st_size <= HASH_LIMIT_BYTES
    if verify_blob and blob is not None and matches_name(blob, blob.name) is False:
        return FileCheck(
            path, Status.HASH_MISMATCH, f"content of blob {blob.name} does not hash to its name",
            f"the blob is corrupt: {_recopy_blob(blob)}",
        )
    return FileCheck(path, Status.OK)


def check_file(path: Path, *, sha256: str | None = None, verify_blob: bool | None = None) -> FileCheck:
    """Check one file.

    Args:
        path: the file (a snapshot symlink is followed to its blob).
        sha256: the expected sha256 of the content, if known (the file is then hashed).
        verify_blob: for a symlink into a Hugging Face ``blobs/`` folder, hash the blob and compare with its
            name (sha256 for LFS files, git sha1 for the others); ``None`` (default): only a blob of at most
            :data:`HASH_LIMIT_BYTES`.
    """
    path = Path(path)
    problem = stat_check(path)
    if problem is not None:
        return problem
    blob = flattened_link(path)
    if blob is not None:
        return _flattened_check(path, blob, sha256, verify_blob)
    check = content_check(path, sha256, verify_blob=verify_blob)
    if not check.ok:
        return check
    try:
        reason = read_error(path)
    except UnsafePickleError as error:
        return FileCheck(
            path, Status.UNSAFE, error.detail, "delete it and copy the asset from a trusted source (plain weights)"
        )
    if reason is not None:
        return FileCheck(path, Status.UNREADABLE, reason, f"the file is truncated or corrupt: {RECOPY}")
    return FileCheck(path, Status.OK)


def _flattened_check(path: Path, blob: Path, sha256: str | None, verify_blob: bool | None) -> FileCheck:
    """Check the blob a flattened link names, as the file the link stands for; ``flattened-link`` if sound."""
    if verify_blob is None:
        verify_blob = blob.stat().st_size <= HASH_LIMIT_BYTES
    if (sha256 is not None and sha256_of(blob) != sha256.lower()) or (
        verify_blob and matches_name(blob, blob.name) is False
    ):
        return FileCheck(
            path, Status.HASH_MISMATCH, f"names blobs/{blob.name}, whose content does not hash to its digest",
            f"the blob is corrupt: {_recopy_blob(blob)}",
        )
    try:
        reason = read_error(blob, name=path.name)
    except UnsafePickleError as error:
        return FileCheck(path, Status.UNSAFE, error.detail, "delete the tree and copy it from a trusted source")
    if reason is not None:
        return FileCheck(path, Status.UNREADABLE, f"names blobs/{blob.name}, which {reason}", _recopy_blob(blob))
    return FileCheck(
        path, Status.FLATTENED, f"a symlink copied as a text file naming blobs/{blob.name} (read through it)",
        f"`diarizen-lab checkpoints repair {blob.parent.parent}` makes it a symlink again",
    )
