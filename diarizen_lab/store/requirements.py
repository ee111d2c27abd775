"""Which pretrained assets a configuration refers to, so that ``doctor`` can check them before a run."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: keys whose value names an asset: ``*checkpoint*``, ``embedding``, ``plda`` (also as ``*_embedding``, ``*_plda``)
ASSET_KEY = re.compile(r".*checkpoint.*|(.*_)?(embedding|plda)")
#: keys that name an output folder, never an asset (``checkpoint_dir``, ...)
OUTPUT_KEY = re.compile(r".*_dirs?")


def required_assets(config: Mapping[str, Any]) -> list[str]:
    """Asset names (or missing paths) that a loaded config refers to, in order, without duplicates.

    Walks nested mappings, lists and dataclasses (such as config blocks) and collects the string or path
    values of keys matching :data:`ASSET_KEY` (case-insensitive; keys ending in ``_dir`` are output folders and
    skipped), leaving out values that name an existing path. A pyannote-style table
    ``{checkpoint = "org/name", subfolder = "plda"}`` yields one name, ``"org/name/plda"``. Each name can be
    passed to :meth:`CheckpointStore.resolve <diarizen_lab.store.CheckpointStore.resolve>`.
    """
    found: dict[str, None] = {}
    _collect(config, found)
    return list(found)


def _collect(node: Any, found: dict[str, None]) -> None:
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        node = {field.name: getattr(node, field.name) for field in dataclasses.fields(node)}
    if isinstance(node, Mapping):
        checkpoint, subfolder = node.get("checkpoint"), node.get("subfolder")
        if isinstance(checkpoint, str) and isinstance(subfolder, str):
            _add(f"{checkpoint.rstrip('/')}/{subfolder}", found)
            node = {key: value for key, value in node.items() if key not in ("checkpoint", "subfolder")}
        for key, value in node.items():
            key = str(key).lower()
            if isinstance(value, (str, os.PathLike)):
                if ASSET_KEY.fullmatch(key) and not OUTPUT_KEY.fullmatch(key):
                    _add(os.fspath(value), found)
            else:
                _collect(value, found)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _collect(item, found)


def _add(value: str, found: dict[str, None]) -> None:
    if value and not Path(value).expanduser().exists():
        found.setdefault(value)
