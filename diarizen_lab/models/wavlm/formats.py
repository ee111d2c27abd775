"""Read and write WavLM weights in every common format, strictly.

Supported inputs (detected automatically):

- **diarizen_lab** files written by :func:`save_wavlm`: ``{"format": "diarizen_lab.wavlm/1", "config": ...,
  "state_dict": ...}``; they describe pruned architectures too.
- **upstream DiariZen** ``{"state_dict", "config"}`` files (``wavlm_only.bin``, the output of its pruning and
  of its transformers converter), pruned or not: see :mod:`diarizen_lab.models.wavlm.upstream`.
- **Microsoft / fairseq** ``.pt`` files (``{"cfg": ..., "model": state_dict}``) as released with the WavLM paper;
  ``cfg`` may be a dict or an object with attributes, possibly nested under ``"model"``. Its
  ``conv_feature_layers`` string is parsed as data (:func:`parse_conv_feature_layers`), never evaluated.
- **transformers** ``WavLMModel`` / ``WavLMFor*`` directories (``config.json`` with ``model.safetensors`` or
  ``pytorch_model.bin``), such as a hub-cache snapshot. Task heads of ``WavLMFor*`` models are ignored.
- **bare state dicts** (``.safetensors``, ``.bin``, ``.pt``) named as in transformers (optionally under a
  ``wavlm.`` prefix), torchaudio (``torchaudio.models.wavlm_model``), fairseq, or diarizen_lab. A bare state
  dict has no config: the architecture is read from tensor shapes, assuming the standard extractor strides,
  pre-norm layers and waveform normalisation exactly when the extractor uses layer norm (as in every released
  WavLM) and ``max_distance=800``. A weight file next to a transformers ``config.json`` uses that config instead.

Either positional-convolution weight-norm spelling (``weight_g``/``weight_v`` or
``parametrizations.weight.original0``/``original1``) is accepted. Only the pretraining mask embedding
(``mask_emb``, ``masked_spec_embed``) is dropped; any other key the architecture lacks, any key it needs that
the file lacks, and any shape mismatch raise :class:`~diarizen_lab.errors.InputError` naming the file.
"""

from __future__ import annotations

import ast
import json
import pickle
import re
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diarizen_lab.errors import InputError, describe
from diarizen_lab.models.wavlm.config import STANDARD_CONV_LAYERS, WavLMConfig
from diarizen_lab.models.wavlm.model import WavLM
from diarizen_lab.models.wavlm.upstream import is_upstream_config, wavlm_from_upstream
from diarizen_lab.utils.atomic import atomic_path
from diarizen_lab.utils.torch_files import UnsafePickleError, load_torch_file

FORMAT = "diarizen_lab.wavlm/1"
HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
MAX_CONV_LAYERS = 64

StateDict = dict[str, Tensor]

_POS_CONV_G = "encoder.pos_conv.conv.parametrizations.weight.original0"
_POS_CONV_V = "encoder.pos_conv.conv.parametrizations.weight.original1"
_REL_EMBED = "encoder.rel_attn_embed.embedding.weight"
_LAYER = r"encoder.layers.\1."

# (pattern matched at the start of a key, replacement); the first matching rule renames a key, keys matching
# no rule keep their name. Result: the names of WavLM(config).state_dict().
_RENAMES: dict[str, list[tuple[str, str]]] = {
    "transformers": [
        (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.layers.\1.conv."),
        (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.layers.\1.norm."),
        (r"encoder\.pos_conv_embed\.conv\.weight_g$", _POS_CONV_G),
        (r"encoder\.pos_conv_embed\.conv\.weight_v$", _POS_CONV_V),
        (r"encoder\.pos_conv_embed\.", "encoder.pos_conv."),
        (r"encoder\.layers\.0\.attention\.rel_attn_embed\.weight$", _REL_EMBED),
        (r"encoder\.layers\.(\d+)\.layer_norm\.", _LAYER + "attention_norm."),
        (r"encoder\.layers\.(\d+)\.final_layer_norm\.", _LAYER + "feed_forward_norm."),
        (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", _LAYER + "feed_forward.intermediate."),
        (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", _LAYER + "feed_forward.output."),
    ],
    "torchaudio": [
        (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.layers.\1.conv."),
        (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.layers.\1.norm."),
        (r"encoder\.feature_projection\.", "feature_projection."),
        (r"encoder\.transformer\.pos_conv_embed\.conv\.weight_g$", _POS_CONV_G),
        (r"encoder\.transformer\.pos_conv_embed\.conv\.weight_v$", _POS_CONV_V),
        (r"encoder\.transformer\.pos_conv_embed\.", "encoder.pos_conv."),
        (r"encoder\.transformer\.layer_norm\.", "encoder.layer_norm."),
        (r"encoder\.transformer\.layers\.0\.attention\.rel_attn_embed\.weight$", _REL_EMBED),
        (r"encoder\.transformer\.layers\.(\d+)\.attention\.attention\.in_proj_", _LAYER + "attention.in_proj."),
        (r"encoder\.transformer\.layers\.(\d+)\.attention\.attention\.", _LAYER + "attention."),
        (r"encoder\.transformer\.layers\.(\d+)\.attention\.", _LAYER + "attention."),
        (r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.", _LAYER + "attention_norm."),
        (r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.", _LAYER + "feed_forward_norm."),
        (
            r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.",
            _LAYER + "feed_forward.intermediate.",
        ),
        (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.", _LAYER + "feed_forward.output."),
    ],
    "fairseq": [
        (r"feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.layers.\1.conv."),
        (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.", r"feature_extractor.layers.\1.norm."),
        (r"feature_extractor\.conv_layers\.(\d+)\.2\.", r"feature_extractor.layers.\1.norm."),
        (r"layer_norm\.", "feature_projection.layer_norm."),
        (r"post_extract_proj\.", "feature_projection.projection."),
        (r"encoder\.pos_conv\.0\.weight_g$", _POS_CONV_G),
        (r"encoder\.pos_conv\.0\.weight_v$", _POS_CONV_V),
        (r"encoder\.pos_conv\.0\.", "encoder.pos_conv.conv."),
        (r"encoder\.layers\.0\.self_attn\.relative_attention_bias\.weight$", _REL_EMBED),
        (r"encoder\.layers\.(\d+)\.self_attn\.grep_linear\.", _LAYER + "attention.gru_rel_pos_linear."),
        (r"encoder\.layers\.(\d+)\.self_attn\.grep_a$", _LAYER + "attention.gru_rel_pos_const"),
        (r"encoder\.layers\.(\d+)\.self_attn\.", _LAYER + "attention."),
        (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.", _LAYER + "attention_norm."),
        (r"encoder\.layers\.(\d+)\.fc1\.", _LAYER + "feed_forward.intermediate."),
        (r"encoder\.layers\.(\d+)\.fc2\.", _LAYER + "feed_forward.output."),
        (r"encoder\.layers\.(\d+)\.final_layer_norm\.", _LAYER + "feed_forward_norm."),
    ],
    "diarizen_lab": [],
}

#: Pretraining-only parameters (the embedding that replaces masked frames), dropped on load.
_DROPPED = {"transformers": {"masked_spec_embed"}, "fairseq": {"mask_emb"}, "torchaudio": set(), "diarizen_lab": set()}


# ---------------------------------------------------------------------------------------------------------------
# public API


def load_wavlm_checkpoint(path: str | PathLike) -> tuple[WavLMConfig, StateDict]:
    """Architecture and weights (diarizen_lab names) of a WavLM file or transformers model directory."""
    path = Path(path)
    if path.is_dir():
        config, state_dict = _load_transformers_dir(path)
    else:
        config, state_dict = _load_file(path)
    check_state_dict(config, state_dict, path)
    return config, state_dict


def load_wavlm(path: str | PathLike, **training: float) -> WavLM:
    """A :class:`WavLM` with the weights of ``path``; ``training`` overrides regularisation settings."""
    config, state_dict = load_wavlm_checkpoint(path)
    model = WavLM(config.with_training(**training))
    model.load_state_dict(state_dict)
    return model


def save_wavlm(path: str | PathLike, model_or_config: WavLM | WavLMConfig, state_dict: StateDict | None = None) -> None:
    """Write a diarizen_lab WavLM file atomically (architecture and weights must agree).

    Pass a model, or a config and its state dict. Remove any pruning gates from the model first.
    """
    if isinstance(model_or_config, WavLM):
        config = model_or_config.config
        state_dict = model_or_config.state_dict() if state_dict is None else state_dict
    elif state_dict is None:
        raise ValueError("save_wavlm needs the state dict that goes with a config")
    else:
        config = model_or_config
    check_state_dict(config, state_dict, path)
    payload = {
        "format": FORMAT,
        "config": config.to_dict(),
        "state_dict": {key: value.detach().cpu().contiguous() for key, value in state_dict.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def convert_wavlm(src: str | PathLike, dst: str | PathLike) -> WavLMConfig:
    """Convert any supported WavLM checkpoint to a diarizen_lab file; returns its architecture."""
    config, state_dict = load_wavlm_checkpoint(src)
    save_wavlm(dst, config, state_dict)
    return config


def check_state_dict(config: WavLMConfig, state_dict: Mapping[str, Tensor], path: str | PathLike) -> None:
    """Raise :class:`InputError` unless ``state_dict`` has exactly the keys and shapes of ``WavLM(config)``."""
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in WavLM(config).state_dict().items()}
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"{key} {tuple(value.shape)} in file, {expected[key]} expected"
        for key, value in state_dict.items()
        if key in expected and tuple(value.shape) != expected[key]
    ]
    problems = [
        _listing(items, label)
        for items, label in [(missing, "missing key"), (unexpected, "unexpected key"), (mismatched, "shape mismatch")]
        if items
    ]
    if problems:
        raise InputError(
            f"weights do not fit the WavLM architecture: {'; '.join(problems)}",
            path=path,
            fix="use a complete WavLM checkpoint, unmodified since it was written",
        )


def parse_conv_feature_layers(spec: str) -> list[tuple[int, int, int]]:
    """Parse fairseq's ``conv_feature_layers`` string, e.g. ``"[(512,10,5)] + [(512,3,2)] * 4"``.

    Only list literals of ``(channels, kernel, stride)`` integer tuples, ``+`` between lists and ``*`` by an
    integer are accepted; anything else raises ``ValueError`` (nothing is evaluated).
    """
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"conv_feature_layers {spec!r} is not a list expression: {error.msg}") from None
    layers = _conv_list(tree.body, spec)
    if not layers:
        raise ValueError(f"conv_feature_layers {spec!r} describes no layer")
    return layers


# ---------------------------------------------------------------------------------------------------------------
# files


def _load_file(path: Path) -> tuple[WavLMConfig, StateDict]:
    content = _read(path)
    if isinstance(content, Mapping) and "format" in content:
        return _from_diarizen_lab(content, path)
    if isinstance(content, Mapping) and "state_dict" in content and is_upstream_config(content.get("config")):
        return _from_upstream(content, path)
    if isinstance(content, Mapping) and "model" in content and ("cfg" in content or "args" in content):
        return _from_fairseq(content, path)
    if isinstance(content, Mapping) and content and all(isinstance(v, Tensor) for v in content.values()):
        return _from_bare_state_dict(dict(content), path)
    keys = ", ".join(map(str, list(content)[:8])) if isinstance(content, Mapping) else type(content).__name__
    raise InputError(
        f"not a WavLM checkpoint (top level: {keys})",
        path=path,
        fix="pass a diarizen_lab, upstream DiariZen (state_dict + config), fairseq (cfg + model), transformers or "
        "torchaudio WavLM checkpoint",
    )


def _read(path: Path) -> Any:
    if not path.is_file():
        raise InputError("no such checkpoint file", path=path, fix="check the path or the asset name")
    if path.stat().st_size == 0:
        raise InputError("checkpoint file is empty (0 bytes)", path=path, fix="download or convert it again")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise _corrupt(path, error) from None
    try:
        return load_torch_file(path)
    except UnsafePickleError as error:
        raise InputError(
            f"WavLM checkpoint refused as unsafe: {error.detail}",
            path=path,
            fix="in a trusted environment, re-save it as plain weights (its cfg converted to a dict)",
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise _corrupt(path, error) from None


def _corrupt(path: Path, error: Exception) -> InputError:
    return InputError(
        f"cannot read checkpoint, the file is corrupt or truncated ({describe(error)})",
        path=path,
        fix="download or convert it again",
    )


def _from_diarizen_lab(content: Mapping[str, Any], path: Path) -> tuple[WavLMConfig, StateDict]:
    if content["format"] != FORMAT:
        raise InputError(
            f"unsupported checkpoint format {content['format']!r} (expected {FORMAT!r})",
            path=path,
            fix="a diarizen_lab model checkpoint is read with diarizen_lab.models.load_model",
        )
    try:
        config = WavLMConfig.from_dict(dict(content["config"]))
        state_dict = dict(content["state_dict"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"invalid {FORMAT} checkpoint: {error}", path=path, fix="convert it again") from None
    return config, state_dict


def _from_upstream(content: Mapping[str, Any], path: Path) -> tuple[WavLMConfig, StateDict]:
    try:
        return wavlm_from_upstream(content["config"], content["state_dict"])
    except (TypeError, ValueError, KeyError) as error:
        raise InputError(
            f"invalid upstream DiariZen WavLM config: {describe(error)}",
            path=path,
            fix="pass a {state_dict, config} file written by upstream DiariZen, unmodified",
        ) from None


def _from_fairseq(content: Mapping[str, Any], path: Path) -> tuple[WavLMConfig, StateDict]:
    cfg = content.get("cfg") or content.get("args")
    nested = _field(cfg, "model", None)
    if nested is not None and _field(nested, "encoder_layers", None) is not None:
        cfg = nested
    try:
        config = _config_from_fairseq(cfg)
    except (TypeError, ValueError) as error:
        raise InputError(
            f"invalid fairseq WavLM cfg: {error}", path=path, fix="pass an original WavLM checkpoint"
        ) from None
    return config, rename_state_dict(dict(content["model"]), "fairseq")


def _load_transformers_dir(directory: Path) -> tuple[WavLMConfig, StateDict]:
    weights = next((directory / name for name in HF_WEIGHTS if (directory / name).is_file()), None)
    if not (directory / HF_CONFIG).is_file() or weights is None:
        raise InputError(
            f"not a transformers model directory: it needs {HF_CONFIG} and one of {', '.join(HF_WEIGHTS)}",
            path=directory,
            fix="pass the model directory (or hub-cache snapshot) that save_pretrained wrote",
        )
    config = _config_from_transformers(directory / HF_CONFIG)
    content = _read(weights)
    if not isinstance(content, Mapping):
        raise InputError("weights file holds no state dict", path=weights, fix="download it again")
    return config, rename_state_dict(_strip_head(dict(content)), "transformers")


def _from_bare_state_dict(state_dict: StateDict, path: Path) -> tuple[WavLMConfig, StateDict]:
    state_dict = _strip_head(state_dict)
    naming = _naming(state_dict, path)
    renamed = rename_state_dict(state_dict, naming)
    if naming == "transformers" and (path.parent / HF_CONFIG).is_file():
        return _config_from_transformers(path.parent / HF_CONFIG), renamed
    return infer_config(renamed, path), renamed


def _naming(state_dict: StateDict, path: Path) -> str:
    keys = list(state_dict)

    def has(*prefixes: str) -> bool:
        return any(key.startswith(prefixes) for key in keys)

    if has("encoder.rel_attn_embed.", "feature_extractor.layers."):
        return "diarizen_lab"
    if has("encoder.transformer."):
        return "torchaudio"
    if has("post_extract_proj.", "encoder.pos_conv.0."):
        return "fairseq"
    if has("feature_projection.", "encoder.pos_conv_embed."):
        return "transformers"
    raise InputError(
        f"state dict with unknown key names (first: {', '.join(keys[:3])})",
        path=path,
        fix="pass a transformers, torchaudio, fairseq or diarizen_lab WavLM state dict",
    )


def _strip_head(state_dict: StateDict) -> StateDict:
    """The ``wavlm.`` submodule of a transformers ``WavLMFor*`` state dict (the task head is not WavLM)."""
    prefix = "wavlm."
    if not any(key.startswith(prefix) for key in state_dict):
        return state_dict
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def rename_state_dict(state_dict: StateDict, naming: str) -> StateDict:
    """Keys of a ``naming`` state dict (see ``_RENAMES``) renamed to ours; pretraining-only keys dropped."""
    rules = [(re.compile(pattern), replacement) for pattern, replacement in _RENAMES[naming]]
    renamed: StateDict = {}
    for key, value in state_dict.items():
        if key in _DROPPED[naming]:
            continue
        for pattern, replacement in rules:
            if pattern.match(key):
                key = pattern.sub(replacement, key, count=1)
                break
        renamed[key] = value
    # torchaudio packs the query, key and value projections in one matrix
    for key in [key for key in renamed if ".attention.in_proj." in key]:
        for name, part in zip(("q_proj", "k_proj", "v_proj"), renamed.pop(key).chunk(3, dim=0)):
            renamed[key.replace("in_proj", name)] = part
    return renamed


# ---------------------------------------------------------------------------------------------------------------
# configs


def infer_config(state_dict: StateDict, path: str | PathLike) -> WavLMConfig:
    """Architecture of a state dict with diarizen_lab names, read from its tensor shapes (see module docstring)."""
    try:
        conv_weights = []
        while f"feature_extractor.layers.{len(conv_weights)}.conv.weight" in state_dict:
            conv_weights.append(state_dict[f"feature_extractor.layers.{len(conv_weights)}.conv.weight"])
        kernels = [int(w.shape[2]) for w in conv_weights]
        if kernels != [kernel for _, kernel, _ in STANDARD_CONV_LAYERS]:
            raise InputError(
                f"cannot infer the strides of a feature extractor with kernels {kernels}",
                path=path,
                fix="convert the model to the diarizen_lab format, whose config gives the strides",
            )
        conv_layers = [(int(w.shape[0]), k, s) for w, (_, k, s) in zip(conv_weights, STANDARD_CONV_LAYERS)]
        layer_norm_extractor = "feature_extractor.layers.1.norm.weight" in state_dict
        embed_dim = int(state_dict["feature_projection.projection.weight"].shape[0])
        num_buckets, total_heads = (int(n) for n in state_dict[_REL_EMBED].shape)
        head_dim = embed_dim // total_heads
        num_layers = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"encoder\.layers\.(\d+)\.", k)))
        num_heads, ffn_dims = [], []
        for layer in range(num_layers):
            query = state_dict.get(f"encoder.layers.{layer}.attention.q_proj.weight")
            intermediate = state_dict.get(f"encoder.layers.{layer}.feed_forward.intermediate.weight")
            num_heads.append(0 if query is None else int(query.shape[0]) // head_dim)
            ffn_dims.append(0 if intermediate is None else int(intermediate.shape[0]))
        pos_conv = state_dict[_POS_CONV_V]
        return WavLMConfig(
            conv_layers=conv_layers,
            extractor_mode="layer_norm" if layer_norm_extractor else "default",
            conv_bias="feature_extractor.layers.0.conv.bias" in state_dict,
            embed_dim=embed_dim,
            total_heads=total_heads,
            num_heads=num_heads,
            ffn_dims=ffn_dims,
            layer_norm_first=layer_norm_extractor,
            normalize_waveform=layer_norm_extractor,
            pos_conv_kernel=int(pos_conv.shape[2]),
            pos_conv_groups=embed_dim // int(pos_conv.shape[1]),
            num_buckets=num_buckets,
        )
    except (KeyError, ValueError, IndexError, ZeroDivisionError) as error:
        raise InputError(
            f"cannot infer the WavLM architecture from the state dict ({type(error).__name__}: {error})",
            path=path,
            fix="pass a complete WavLM checkpoint",
        ) from None


def _field(cfg: Any, name: str, default: Any) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def _config_from_fairseq(cfg: Any) -> WavLMConfig:
    """WavLMConfig of a fairseq WavLM cfg; absent fields take the defaults of Microsoft's WavLMConfig.

    ``normalize`` (absent: true exactly for the layer-norm extractor, as in every released WavLM) tells whether
    the model was trained on normalised waveforms; dropouts and layer drop are the cfg's.
    """

    def get(name: str, default: Any) -> Any:
        return _field(cfg, name, default)

    if not (get("relative_position_embedding", False) and get("gru_rel_pos", False)):
        raise ValueError("relative_position_embedding and gru_rel_pos must be true (is this HuBERT/wav2vec 2.0?)")
    if get("activation_fn", "gelu") != "gelu":
        raise ValueError(f"activation_fn {get('activation_fn', 'gelu')!r} is not supported (only gelu)")
    spec = get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")
    layers = int(get("encoder_layers", 12))
    heads = int(get("encoder_attention_heads", 12))
    return WavLMConfig(
        conv_layers=parse_conv_feature_layers(spec) if isinstance(spec, str) else spec,
        extractor_mode=get("extractor_mode", "default"),
        conv_bias=bool(get("conv_bias", False)),
        embed_dim=int(get("encoder_embed_dim", 768)),
        total_heads=heads,
        num_heads=[heads] * layers,
        ffn_dims=[int(get("encoder_ffn_embed_dim", 3072))] * layers,
        layer_norm_first=bool(get("layer_norm_first", False)),
        pos_conv_kernel=int(get("conv_pos", 128)),
        pos_conv_groups=int(get("conv_pos_groups", 16)),
        num_buckets=int(get("num_buckets", 320)),
        max_distance=int(get("max_distance", 1280)),
        normalize_waveform=bool(get("normalize", get("extractor_mode", "default") == "layer_norm")),
        dropout=float(get("dropout", 0.1)),
        attention_dropout=float(get("attention_dropout", 0.1)),
        activation_dropout=float(get("activation_dropout", 0.0)),
        projection_dropout=float(get("dropout_input", 0.0)),
        layer_drop=float(get("encoder_layerdrop", 0.0)),
    )


def _config_from_transformers(path: Path) -> WavLMConfig:
    """WavLMConfig of a transformers ``config.json``; absent fields take transformers' WavLMConfig defaults.

    Waveforms are normalised exactly for the layer-norm extractor (Large), as transformers' feature extractor
    does for those models and as upstream DiariZen's converter decides; dropouts and layer drop are the config's.
    """
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(
            f"invalid JSON: {error.msg}", path=path, line=error.lineno, fix="repair or re-download it"
        ) from None
    if not isinstance(cfg, dict) or cfg.get("model_type", "wavlm") != "wavlm":
        kind = cfg.get("model_type") if isinstance(cfg, dict) else type(cfg).__name__
        raise InputError(f"not a WavLM config (model_type {kind!r})", path=path, fix="pass a WavLM model")
    for key in ("hidden_act", "feat_extract_activation"):
        if cfg.get(key, "gelu") != "gelu":
            raise InputError(f"{key} {cfg[key]!r} is not supported (only gelu)", path=path, fix="pass a WavLM model")
    layers = cfg.get("num_hidden_layers", 12)
    heads = cfg.get("num_attention_heads", 12)
    norm = cfg.get("feat_extract_norm", "group")
    try:
        if norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm must be 'group' or 'layer', got {norm!r}")
        return WavLMConfig(
            conv_layers=list(zip(cfg.get("conv_dim", [512] * 7), cfg.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2]),
                                 cfg.get("conv_stride", [5, 2, 2, 2, 2, 2, 2]), strict=True)),
            extractor_mode="layer_norm" if norm == "layer" else "default",
            conv_bias=bool(cfg.get("conv_bias", False)),
            embed_dim=cfg.get("hidden_size", 768),
            total_heads=heads,
            num_heads=[heads] * layers,
            ffn_dims=[cfg.get("intermediate_size", 3072)] * layers,
            layer_norm_first=bool(cfg.get("do_stable_layer_norm", False)),
            pos_conv_kernel=cfg.get("num_conv_pos_embeddings", 128),
            pos_conv_groups=cfg.get("num_conv_pos_embedding_groups", 16),
            num_buckets=cfg.get("num_buckets", 320),
            max_distance=cfg.get("max_bucket_distance", 800),
            layer_norm_eps=cfg.get("layer_norm_eps", 1e-5),
            normalize_waveform=norm == "layer",
            dropout=cfg.get("hidden_dropout", 0.1),
            attention_dropout=cfg.get("attention_dropout", 0.1),
            activation_dropout=cfg.get("activation_dropout", 0.1),
            projection_dropout=cfg.get("feat_proj_dropout", 0.0),
            layer_drop=cfg.get("layerdrop", 0.1),
        )
    except (TypeError, ValueError) as error:
        raise InputError(f"invalid WavLM config: {error}", path=path, fix="repair or re-download it") from None


def _conv_list(node: ast.expr, spec: str) -> list[tuple[int, int, int]]:
    if isinstance(node, ast.List):
        return [_conv_tuple(element, spec) for element in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        layers = _conv_list(node.left, spec) + _conv_list(node.right, spec)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        sequence, count = node.left, node.right
        if isinstance(sequence, ast.Constant):  # 4 * [...]
            sequence, count = count, sequence
        repeat = _int(count, spec)
        layers = _conv_list(sequence, spec)
        if repeat * len(layers) > MAX_CONV_LAYERS:
            raise ValueError(f"conv_feature_layers {spec!r} has more than {MAX_CONV_LAYERS} layers")
        layers = layers * repeat
    else:
        raise ValueError(f"conv_feature_layers {spec!r}: unsupported expression {ast.unparse(node)!r}")
    if len(layers) > MAX_CONV_LAYERS:
        raise ValueError(f"conv_feature_layers {spec!r} has more than {MAX_CONV_LAYERS} layers")
    return layers


def _conv_tuple(node: ast.expr, spec: str) -> tuple[int, int, int]:
    if not (isinstance(node, ast.Tuple) and len(node.elts) == 3):
        raise ValueError(
            f"conv_feature_layers {spec!r}: expected (channels, kernel, stride), got {ast.unparse(node)!r}"
        )
    channels, kernel, stride = (_int(element, spec) for element in node.elts)
    return channels, kernel, stride


def _int(node: ast.expr, spec: str) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 0:
        return node.value
    raise ValueError(f"conv_feature_layers {spec!r}: expected a non-negative integer, got {ast.unparse(node)!r}")


def _listing(items: list[str], label: str, shown: int = 5) -> str:
    more = f", ... ({len(items) - shown} more)" if len(items) > shown else ""
    plural = "s" if len(items) > 1 else ""
    return f"{len(items)} {label}{plural} ({', '.join(items[:shown])}{more})"


__all__ = [
    "FORMAT",
    "check_state_dict",
    "convert_wavlm",
    "infer_config",
    "load_wavlm",
    "load_wavlm_checkpoint",
    "parse_conv_feature_layers",
    "rename_state_dict",
    "save_wavlm",
]
