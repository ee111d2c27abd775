"""Offline checkpoint store: pretrained assets (WavLM, speaker embedding, PLDA) by name, from local files only.

>>> from diarizen_lab.store import resolve_asset
>>> resolve_asset("wavlm-base-plus")  # doctest: +SKIP
PosixPath('/data/checkpoints/models--microsoft--wavlm-base-plus/snapshots/3b4f.../')

Resolution order, the manifest schema and the cache layouts are documented in :mod:`diarizen_lab.store.store`,
:mod:`diarizen_lab.store.manifest` and :mod:`diarizen_lab.store.hfcache`; ``diarizen-lab checkpoints --help``
describes the command line (list, verify, repair, convert).
"""

from diarizen_lab.store.checks import FileCheck, Status, check_file
from diarizen_lab.store.hfcache import default_hf_cache
from diarizen_lab.store.manifest import MANIFEST_NAME, ManifestEntry, load_manifest
from diarizen_lab.store.repair import RepairAction, repair_tree
from diarizen_lab.store.store import (
    KNOWN_ASSETS,
    Asset,
    AssetNotFoundError,
    BrokenAssetError,
    CheckpointStore,
    KnownAsset,
    default_checkpoint_dir,
    resolve_asset,
)
from diarizen_lab.store.verify import Section, verify_store

__all__ = [
    "KNOWN_ASSETS",
    "MANIFEST_NAME",
    "Asset",
    "AssetNotFoundError",
    "BrokenAssetError",
    "CheckpointStore",
    "FileCheck",
    "KnownAsset",
    "ManifestEntry",
    "RepairAction",
    "Section",
    "Status",
    "check_file",
    "default_checkpoint_dir",
    "default_hf_cache",
    "load_manifest",
    "repair_tree",
    "resolve_asset",
    "verify_store",
]
