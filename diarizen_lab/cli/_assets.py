"""The checkpoint-store part of ``diarizen-lab doctor``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def report_assets(checkpoint_dir: Path | None, config_path: Path | None) -> int:
    """Print which pretrained assets resolve; return the number of broken assets and of needed ones missing.

    The assets a training config needs are its values of arguments annotated
    :class:`~diarizen_lab.config.Asset`, read from the loaded config (not guessed from key names).
    """
    from diarizen_lab.config import assets_of
    from diarizen_lab.store import AssetNotFoundError, BrokenAssetError, CheckpointStore
    from diarizen_lab.training.recipe import load_training_config

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
    if _is_diarization_config(config_path):
        return problems + _report_diarization_assets(store, config_path)
    with _default_store(checkpoint_dir):  # resolve the config's assets as a run with this store would
        assets = assets_of(load_training_config(config_path))
    print(f"assets needed by {config_path}: {', '.join(asset.reference for asset in assets) or 'none'}")
    for asset in assets:
        if asset.exists():
            print(f"  [ok] {asset.reference:<26} {asset}")
        else:
            print(f"  [!!] {asset.reference:<26} {asset.problem or f'no such file {asset}'}")
            problems += 1
    return problems


def _is_diarization_config(path: Path) -> bool:
    import tomllib

    try:
        return "diarization" in tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False  # the training-config loader reports it


def _report_diarization_assets(store: Any, config_path: Path) -> int:
    """The store assets a ``[diarization]`` config's pipeline loads (:meth:`DiarizationConfig.store_assets`)."""
    from diarizen_lab.config import load_config
    from diarizen_lab.evaluation.pipeline import DiarizationConfig
    from diarizen_lab.store import AssetNotFoundError

    settings = load_config(config_path, {"diarization": DiarizationConfig})["diarization"]
    needed = settings.store_assets()
    print(f"assets needed by {config_path}: {', '.join(needed) or 'none'}")
    problems = 0
    for name in needed:
        try:
            print(f"  [ok] {name:<26} {store.resolve(name)}")
        except AssetNotFoundError as error:
            print(f"  [!!] {name:<26} {error}")
            problems += 1
    return problems


@contextlib.contextmanager
def _default_store(checkpoint_dir: Path | None) -> Iterator[None]:
    """Make ``checkpoint_dir`` (when given) the default store of asset resolution for the ``with`` body."""
    from diarizen_lab.store.store import ENV_VARIABLE

    saved = os.environ.get(ENV_VARIABLE)
    if checkpoint_dir is not None:
        os.environ[ENV_VARIABLE] = str(checkpoint_dir)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(ENV_VARIABLE, None)
        else:
            os.environ[ENV_VARIABLE] = saved
