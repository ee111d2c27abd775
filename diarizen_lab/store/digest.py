"""Content digests used to name and check files: sha256 (manifests, Hugging Face LFS blobs) and git's blob sha1."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

_CHUNK = 1 << 20
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
GIT_SHA1_PATTERN = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Digests:
    """Both names a Hugging Face cache may give a blob: sha256 for LFS files, git's blob sha1 otherwise."""

    sha256: str
    git_sha1: str

    def names(self) -> tuple[str, str]:
        return self.sha256, self.git_sha1


def digests(path: str | os.PathLike) -> Digests:
    """sha256 and git blob sha1 (``sha1(b"blob <size>\\0" + content)``) of a file, in one pass."""
    size = os.path.getsize(path)
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return Digests(sha256.hexdigest(), sha1.hexdigest())


def sha256_of(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def matches_name(path: str | os.PathLike, name: str) -> bool | None:
    """Whether a file's content hashes to ``name`` (a sha256 or git sha1); ``None`` if ``name`` is neither."""
    if SHA256_PATTERN.fullmatch(name):
        return sha256_of(path) == name
    if GIT_SHA1_PATTERN.fullmatch(name):
        return digests(path).git_sha1 == name
    return None
