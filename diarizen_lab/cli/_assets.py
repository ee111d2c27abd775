"""The checkpoint-store part of ``diarizen-lab doctor``."""

from __future__ import annotations

import tomllib
from pathlib import Path

from diarizen_lab.errors import InputError


def report_assets(checkpoint_dir: Path | None, config_path: Path | None) -> int:
    """Print which pretrained assets resolve; return the number of broken assets and of needed ones missing."""
    from diarizen_lab.store import AssetNotFoundError, BrokenAssetError, CheckpointStore, required_assets

    store = CheckpointStore(checkpoint_dir)
    print(f"checkpoint store: {store.root}" + ("" if store.root.is_dir() else " (does not exist)"))
    problems = 0
    for name in store.names():
        try:
            print(f"  [ok] {name:<26} {store.resolve(name)}")
        except BrokenAssetError as error:
            print(f"  [!!] {name:<26} {error}")
            problems += 1
        except AssetNotFoundError:
            print(f"  [--] {name:<26} not in the store (needed only by configs that name it)")
    if config_path is None:
        return problems
    try:
        config = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"cannot read config ({error})", path=config_path) from None
    needed = required_assets(config)
    print(f"assets needed by {config_path}: {', '.join(needed) or 'none'}")
    for name in needed:
        try:
            print(f"  [ok] {name:<26} {store.resolve(name)}")
        except AssetNotFoundError as error:
            print(f"  [!!] {name:<26} {error}")
            problems += 1
    return problems
