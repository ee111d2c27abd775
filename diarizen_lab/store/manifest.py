"""The store's manifest, ``<checkpoint dir>/manifest.toml``: asset names mapped to files or folders.

Schema (every table under ``[assets]`` is one asset; only ``path`` is required)::

    [assets.wavlm-base-plus]
    path = "wavlm/WavLM-Base+.pt"   # relative to the manifest's folder, or absolute
    kind = "wavlm"                  # a label shown by `checkpoints list` (default: the detected layout)
    sha256 = "3f1c...e9"            # checked by `checkpoints verify` and at resolution (64 hex digits)

    [assets.plda]
    path = "hub/models--pyannote--speaker-diarization-community-1"  # a Hugging Face cache tree ...
    revision = "main"               # ... its ref or commit (default "main") ...
    subfolder = "plda"              # ... and a folder inside that snapshot
    sha256 = { "plda.npz" = "...", "xvec_transform.npz" = "..." }  # a directory: per file, relative paths

A ``path`` may name a file or folder outside the store (a shared copy on another disk): that is what entries
are for. ``revision`` and ``subfolder`` may not lead out of the tree they name (see
:mod:`diarizen_lab.store.hfcache`), and nothing is ever written through an entry.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from diarizen_lab.errors import InputError
from diarizen_lab.store.digest import SHA256_PATTERN

MANIFEST_NAME = "manifest.toml"
ENTRY_KEYS = ("path", "kind", "sha256", "subfolder", "revision")


@dataclass(frozen=True)
class ManifestEntry:
    """One ``[assets.<name>]`` table, its path made absolute."""

    name: str
    path: Path
    kind: str | None = None
    sha256: str | dict[str, str] | None = None
    subfolder: str | None = None
    revision: str | None = None
    #: the line of the table in the manifest, for messages
    line: int | None = None


class _Lines:
    """Finds where an asset table or one of its keys is written, for error messages."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def find(self, pattern: str, start: int = 0) -> int | None:
        regex = re.compile(pattern)
        for number in range(start, len(self.lines)):
            if regex.match(self.lines[number]):
                return number + 1
        return None

    def of(self, name: str, key: str | None = None) -> int | None:
        quoted = rf"(?:{re.escape(name)}|\"{re.escape(name)}\"|'{re.escape(name)}')"
        table = self.find(rf"\s*\[\s*assets\s*\.\s*{quoted}\s*\]") or self.find(rf"\s*{quoted}\s*=")
        if table is None or key is None:
            return table
        key_line = self.find(rf"\s*{re.escape(key)}\s*=", start=table)
        next_table = self.find(r"\s*\[", start=table)
        if key_line is not None and (next_table is None or key_line < next_table):
            return key_line
        return table


def _toml_error_line(error: tomllib.TOMLDecodeError) -> tuple[str, int | None]:
    match = re.search(r"^(.*) \(at line (\d+), column \d+\)$", str(error))
    if match is None:
        return str(error), None
    return match.group(1), int(match.group(2))


def load_manifest(path: Path) -> dict[str, ManifestEntry]:
    """Parse and validate a manifest; every problem is an :class:`InputError` with the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the manifest ({error})", path=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message, line = _toml_error_line(error)
        raise InputError(f"TOML syntax error: {message}", path=path, line=line) from None
    lines = _Lines(text)
    for key in data:
        if key != "assets":
            raise InputError(
                f"unknown top-level key '{key}'", path=path, line=lines.find(rf"\s*\[?\s*{re.escape(key)}\b"),
                fix="a manifest holds only [assets.<name>] tables",
            )
    assets = data.get("assets", {})
    if not isinstance(assets, dict):
        raise InputError("'assets' must be a table", path=path, line=lines.find(r"\s*assets\s*="))
    return {name: _entry(name, raw, path, lines) for name, raw in assets.items()}


def _entry(name: str, raw: object, manifest: Path, lines: _Lines) -> ManifestEntry:
    def error(message: str, key: str | None = None, fix: str | None = None) -> InputError:
        return InputError(f"[assets.{name}] {message}", path=manifest, line=lines.of(name, key), fix=fix)

    if not isinstance(raw, dict):
        raise error("must be a table", fix=f'write [assets.{name}] with path = "..."')
    for key in raw:
        if key not in ENTRY_KEYS:
            close = difflib.get_close_matches(key, ENTRY_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise error(f"unknown key '{key}'{hint}", key, fix=f"known keys: {', '.join(ENTRY_KEYS)}")
    if "path" not in raw:
        raise error("missing 'path'", fix='add path = "<file or folder, relative to the manifest>"')
    for key in ("path", "kind", "subfolder", "revision"):
        if key in raw and not (isinstance(raw[key], str) and raw[key]):
            raise error(f"'{key}' must be a non-empty string, got {raw[key]!r}", key)
    sha256 = raw.get("sha256")
    digests = sha256 if isinstance(sha256, dict) else {"": sha256} if sha256 is not None else {}
    for file, digest in digests.items():
        if not (isinstance(digest, str) and SHA256_PATTERN.fullmatch(digest.lower())):
            raise error(
                f"sha256{f' of {file!r}' if file else ''} must be 64 hex digits, got {digest!r}", "sha256",
                fix="write the output of `sha256sum FILE`, or remove the key",
            )
    location = Path(raw["path"]).expanduser()
    return ManifestEntry(
        name=name,
        path=location if location.is_absolute() else manifest.parent / location,
        kind=raw.get("kind"),
        sha256={file: digest.lower() for file, digest in sha256.items()} if isinstance(sha256, dict)
        else sha256.lower() if sha256 is not None else None,
        subfolder=raw.get("subfolder"),
        revision=raw.get("revision"),
        line=lines.of(name),
    )
