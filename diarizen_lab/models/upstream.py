"""Upstream DiariZen's released models, loaded as they are published (``BUT-FIT/diarizen-*`` on the hub).

A released model is a folder — or the snapshot of a Hugging Face cache tree ``models--BUT-FIT--diarizen-*`` —
holding:

- ``config.toml``: ``[model]`` (upstream's class path and constructor arguments), ``[inference.args]`` and
  ``[clustering.args]`` (the pipeline settings the model was tuned with); other tables (a full training recipe)
  are ignored, as upstream's pipeline ignores them;
- ``pytorch_model.bin``: upstream's whole-model state dict (read with ``weights_only=True``: no code runs);
- ``plda/`` (optional): ``xvec_transform.npz`` + ``plda.npz`` for VBx clustering;
- ``wavlm_config.json`` (optional): ``{"wavlm_src": name, "config": {...}}``, the WavLM architecture that a
  preset name other than upstream's four stands for.

``[model.args] wavlm_src`` resolves as upstream resolves it: one of upstream's presets, the name registered by
``wavlm_config.json``, or the path (absolute, or relative to the folder) of an upstream ``{"state_dict",
"config"}`` WavLM file, of which only the config is used (the weights are in ``pytorch_model.bin``); a store
asset of that name registers other names (:func:`resolve_wavlm_src`).

:func:`load_released_model` returns our :class:`~diarizen_lab.models.wavlm_conformer.WavLMConformer` with the
released weights: its ``forward`` on ``(batch, channel, sample)`` returns upstream's powerset log-probabilities.
:func:`released_pipeline_settings` gives the diarization settings of ``config.toml`` and ``plda/``
(:func:`diarization_overrides_from_upstream` maps upstream's keys to ours).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diarizen_lab.errors import InputError, describe

CONFIG_FILE = "config.toml"
WEIGHTS_FILE = "pytorch_model.bin"
PLDA_DIR = "plda"
WAVLM_CONFIG_FILE = "wavlm_config.json"
UPSTREAM_MODEL = "diarizen.models.eend.model_wavlm_conformer.Model"


@dataclasses.dataclass(frozen=True)
class ReleasedModel:
    """The settings of a released-model folder (no weights loaded)."""

    folder: Path
    #: upstream's ``[model]``: ``path`` and ``args``
    model: dict[str, Any]
    #: ``[inference.args]``: seg_duration, segmentation_step, batch_size, apply_median_filtering
    inference_args: dict[str, Any]
    #: ``[clustering.args]``: method, min/max_speakers, and the VBx or AHC settings
    clustering_args: dict[str, Any]

    @property
    def plda(self) -> Path | None:
        """The folder's ``plda/`` (for VBx), if it has one."""
        folder = self.folder / PLDA_DIR
        return folder if folder.is_dir() else None

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS_FILE


def is_released_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a released-model folder (``config.toml`` + ``pytorch_model.bin``)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).exists()


def read_released_model(folder: str | os.PathLike) -> ReleasedModel:
    """Parse and check a released folder's ``config.toml``."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    try:
        config = tomllib.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"cannot read the released model's config ({describe(error)})", path=config_path) from None
    model = config.get("model")
    if not isinstance(model, dict) or model.get("path") != UPSTREAM_MODEL or not isinstance(model.get("args"), dict):
        found = model.get("path") if isinstance(model, dict) else None
        raise InputError(
            f"[model] path must be {UPSTREAM_MODEL!r} with a [model.args] table, got {found!r}",
            path=config_path, fix="only upstream's WavLM-Conformer models are released in this format",
        )

    def table(name: str) -> dict[str, Any]:
        value = config.get(name, {}).get("args", {})
        if not isinstance(value, dict):
            raise InputError(f"[{name}.args] must be a table", path=config_path)
        return value

    return ReleasedModel(folder, model, table("inference"), table("clustering"))


# ---------------------------------------------------------------------------------------------------------
# wavlm_src


def is_upstream_preset(name: str) -> bool:
    """Whether ``name`` is one of upstream's WavLM presets (``wavlm_base_s80_md``, ...)."""
    from diarizen_lab.models.wavlm.upstream import upstream_preset_names

    return name in upstream_preset_names()


def upstream_wavlm_architecture(preset: str) -> dict[str, Any]:
    """Our WavLM architecture (a :class:`~diarizen_lab.models.wavlm.WavLMConfig` dict) of an upstream preset.

    A pruned preset (upstream's ``apply_pruning.py`` wrote it, with ``use_layerwise_prune``) gets the extractor
    output scale: the weights released with it carry the soft mask of the last convolution (``dummy_weight``).
    """
    from diarizen_lab.models.wavlm.upstream import upstream_preset, wavlm_config_from_upstream

    config = upstream_preset(preset)
    architecture = wavlm_config_from_upstream(config).to_dict()
    return {**architecture, "extractor_output_scale": "use_layerwise_prune" in config}


def resolve_wavlm_src(
    wavlm_src: str, folder: Path, checkpoint_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Upstream's WavLM config dict that ``wavlm_src`` stands for, first match wins: the name registered by the
    folder's ``wavlm_config.json``; one of upstream's presets; a ``{"state_dict", "config"}`` file at that path
    (absolute, or relative to the folder); a store asset of that name (such a file, or a ``.json`` like
    ``wavlm_config.json``), which registers a name for released folders that cannot be edited (hub snapshots)."""
    from diarizen_lab.store import AssetNotFoundError, CheckpointStore

    registered = folder / WAVLM_CONFIG_FILE
    if registered.is_file():
        name, config = _registered_name(registered)
        if name == wavlm_src:
            return config
    if is_upstream_preset(wavlm_src):
        from diarizen_lab.models.wavlm.upstream import upstream_preset

        return upstream_preset(wavlm_src)
    path = Path(wavlm_src).expanduser()
    path = path if path.is_absolute() else folder / path
    if path.is_file():
        return _config_of_wavlm_file(path)
    store = CheckpointStore(checkpoint_dir)
    try:
        asset = store.resolve(wavlm_src)
    except AssetNotFoundError:
        from diarizen_lab.models.wavlm.upstream import upstream_preset_names

        raise InputError(
            f"[model.args] wavlm_src = {wavlm_src!r} is neither an upstream preset "
            f"({', '.join(upstream_preset_names())}), nor a file, nor an asset of the store {store.root}",
            path=folder / CONFIG_FILE,
            fix=f'put {{"wavlm_src": "{wavlm_src}", "config": {{...}}}} in {registered}, or the upstream WavLM '
            f"file in the store as {wavlm_src}.pt (or a manifest entry [assets.{wavlm_src}] naming either file)",
        ) from None
    if asset.suffix == ".json":
        name, config = _registered_name(asset)
        if name != wavlm_src:
            raise InputError(f"registers wavlm_src {name!r}, not {wavlm_src!r}", path=asset)
        return config
    return _config_of_wavlm_file(asset)


def _registered_name(path: Path) -> tuple[Any, dict[str, Any]]:
    """The ``(wavlm_src, config)`` of a ``wavlm_config.json`` file."""
    try:
        entry = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read ({describe(error)})", path=path) from None
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise InputError('expected {"wavlm_src": name, "config": {...}}', path=path)
    return entry.get("wavlm_src"), entry["config"]


def _config_of_wavlm_file(path: Path) -> dict[str, Any]:
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for unreadable files
        raise InputError(f"cannot read the WavLM file ({describe(error)})", path=path) from None
    if not isinstance(content, dict) or not isinstance(content.get("config"), dict):
        raise InputError('not an upstream {"state_dict", "config"} WavLM file', path=path)
    return content["config"]


# ---------------------------------------------------------------------------------------------------------
# Loading


def released_architecture(released: ReleasedModel, wavlm: dict[str, Any]) -> dict[str, Any]:
    """Our ``{"path", "args"}`` for a released model with the WavLM architecture ``wavlm`` (our config dict):
    upstream's ``[model.args]`` converted by the recipe conversion table
    (:data:`diarizen_lab.upstream_config.RULES`), checked against the WavLM."""
    from diarizen_lab.upstream_config import UnsupportedKeysError, architecture_from_task, convert_model_section

    args = {key: value for key, value in released.model["args"].items() if key != "wavlm_src"}
    config_path = released.folder / CONFIG_FILE
    try:
        block, task = convert_model_section({"path": UPSTREAM_MODEL, "args": args}, source=str(config_path))
    except UnsupportedKeysError as error:
        unsupported = "; ".join(item.removeprefix("model.args.") for item in error.unsupported)
        raise InputError(f"[model.args] has no equivalent here: {unsupported}", path=config_path) from None
    expected = {"wavlm_layer_num": len(wavlm["num_heads"]) + 1, "wavlm_feat_dim": wavlm["embed_dim"]}
    wrong = [f"{key} = {args[key]} (the WavLM gives {value})" for key, value in expected.items()
             if key in args and args[key] != value]
    if wrong:
        raise InputError(f"[model.args] {', '.join(wrong)}", path=config_path)
    # upstream's pipeline feeds one channel whatever num_channels says: ours accepts enough to select from
    block["args"] = {"wavlm": wavlm, **block["args"], "num_channels": block["args"].get("selected_channel", 0) + 1}
    return architecture_from_task(block, task)


def load_released_model(
    folder: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    checkpoint_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """Our model with a released folder's weights, in eval mode (see the module documentation); the store
    ``checkpoint_dir`` may resolve ``wavlm_src`` (:func:`resolve_wavlm_src`)."""
    from diarizen_lab.models.io import build_model, load_state_dict_strictly
    from diarizen_lab.models.upstream_keys import wavlm_conformer_state_dict_from_upstream

    released = read_released_model(folder)
    config_path = released.folder / CONFIG_FILE
    wavlm_src = released.model["args"].get("wavlm_src")
    if not isinstance(wavlm_src, str):
        raise InputError("[model.args] lacks wavlm_src (a preset name or a file)", path=config_path)
    upstream_wavlm = resolve_wavlm_src(wavlm_src, released.folder, checkpoint_dir)
    try:
        wavlm, state_dict = wavlm_conformer_state_dict_from_upstream(_read_state_dict(released.weights), upstream_wavlm)
    except ValueError as error:
        raise InputError(f"{error} (wavlm_src = {wavlm_src!r})", path=released.weights) from None
    architecture = released_architecture(released, wavlm.to_dict())
    try:
        model = build_model(architecture)
    except (ValueError, TypeError) as error:
        raise InputError(f"cannot build the model of this config: {error}", path=config_path) from None
    load_state_dict_strictly(model, state_dict, released.weights, f"upstream {UPSTREAM_MODEL}")
    return model.to(map_location).eval()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types (EOFError, RuntimeError, UnpicklingError, ...)
        raise InputError(f"cannot read the released weights ({describe(error)})", path=path) from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise InputError("not a state dict (a dict of tensors)", path=path)
    return dict(state_dict)


# ---------------------------------------------------------------------------------------------------------
# Pipeline settings

#: upstream ``[inference.args]`` / ``[clustering.args]`` key -> our DiarizationConfig fields, each with its value
#: conversion; a key whose meaning depends on the clustering method has one entry per method (``key@vbx``)
CLUSTERING_METHODS = {"VBxClustering": "vbx", "AgglomerativeClustering": "ahc"}
PIPELINE_SETTINGS: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
    "seg_duration": [("window", float)],
    "segmentation_step": [("step_ratio", float)],
    "batch_size": [("segmentation_batch_size", int), ("embedding_batch_size", int)],  # one size for both
    "apply_median_filtering": [("median_filter", lambda on: 11 if on else 0)],  # upstream filters 11 frames
    "method": [("clustering", CLUSTERING_METHODS.__getitem__)],
    "min_speakers": [("min_speakers", int)],
    "max_speakers": [("max_speakers", int)],
    "ahc_threshold": [("ahc_threshold", float)],  # AHC's cut, and the cut of VBx's AHC initialisation
    "ahc_criterion@vbx": [("vbx_ahc_criterion", str)],
    "Fa@vbx": [("vbx_fa", float)],
    "Fb@vbx": [("vbx_fb", float)],
    "lda_dim@vbx": [("vbx_lda_dim", int)],
    "max_iters@vbx": [("vbx_max_iters", int)],
    "min_cluster_size@ahc": [("min_cluster_size", int)],
}
#: what upstream's pipeline does without a key: the first channel of the audio; centroid linkage for AHC
PIPELINE_IMPLIED: dict[str, dict[str, Any]] = {"vbx": {"channel": 0}, "ahc": {"channel": 0, "ahc_method": "centroid"}}


def diarization_overrides_from_upstream(
    inference_args: dict[str, Any], clustering_args: dict[str, Any]
) -> dict[str, Any]:
    """:class:`~diarizen_lab.evaluation.pipeline.DiarizationConfig` values equivalent to a released model's
    ``[inference.args]`` and ``[clustering.args]`` (the PLDA folder is the caller's: it lives beside them).

    Keys without an equivalent are left out with a warning.
    """
    method = clustering_args.get("method", "VBxClustering")
    if method not in CLUSTERING_METHODS:
        raise InputError(
            f"[clustering.args] method must be one of {', '.join(CLUSTERING_METHODS)}, got {method!r}"
        )
    family = CLUSTERING_METHODS[method]
    overrides = dict(PIPELINE_IMPLIED[family])
    ignored = []
    for key, value in [*inference_args.items(), *clustering_args.items()]:
        targets = PIPELINE_SETTINGS.get(key) or PIPELINE_SETTINGS.get(f"{key}@{family}")
        if targets is None:
            if not any(name.startswith(f"{key}@") for name in PIPELINE_SETTINGS):  # else: the other method's
                ignored.append(f"{key} = {value!r}")
            continue
        for field, convert in targets:
            overrides[field] = convert(value)
    if ignored:
        logging.getLogger(__name__).warning("released model settings not used: %s", "; ".join(ignored))
    return overrides


def released_pipeline_settings(path: str | os.PathLike) -> dict[str, Any]:
    """DiarizationConfig values that a released folder's ``config.toml`` and ``plda/`` give (``{}`` for any
    other model): what ``diarize`` uses unless the user sets them."""
    if not is_released_model(path):
        return {}
    released = read_released_model(path)
    settings = diarization_overrides_from_upstream(released.inference_args, released.clustering_args)
    if released.plda is not None:
        settings["plda"] = str(released.plda)
    return settings
