"""Upstream DiariZen recipe TOMLs (``recipes/*/conf/*.toml``) converted to diarizen_lab training configs.

Every upstream key is looked up in :data:`RULES`, the one table of the conversion: it maps to our key (possibly
with a conversion of its value), is accepted only at the value that matches our fixed behaviour, follows from
something we compute, or is unsupported. A key missing from the table is unsupported too: nothing is dropped
silently. Unsupported keys are errors (listed together) unless ``allow_unsupported`` is set, and then each one is
written as a comment at the top of the output; so is each key that holds without a key of ours (with why).

The output uses the config layout of the recipes (``[task]`` holds the chunk and speaker settings that the model
and the datasets share; a pruning config has an ``[objective]``).

Upstream's multi-channel fusion model has no equivalent here.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import tomli_w

from diarizen_lab.data.task import TASK_KEYS, Task
from diarizen_lab.errors import DiarizenLabError, InputError

__all__ = [
    "RULES",
    "Conversion",
    "UnsupportedKeysError",
    "architecture_from_task",
    "convert_model_section",
    "convert_upstream_config",
    "convert_upstream_text",
]

#: upstream's defaults for task settings a recipe may leave out
TASK_DEFAULTS = {"sample_rate": 16000, "max_speakers_per_chunk": 4, "max_speakers_per_frame": 2}


class Unsupported(Exception):
    """Raised by a rule: this upstream value has no equivalent here (the message says why)."""


class UnsupportedKeysError(DiarizenLabError):
    """Upstream settings without an equivalent; the message lists all of them."""

    def __init__(self, source: str, unsupported: list[str]) -> None:
        self.unsupported = list(unsupported)
        super().__init__(
            f"{source}: unsupported upstream settings (pass --allow-unsupported to convert without them): "
            + "; ".join(unsupported)
        )


@dataclasses.dataclass
class Conversion:
    """What a conversion produced: our config (nested dicts), and the upstream settings it could not carry."""

    config: dict[str, Any]
    #: the upstream file, for error messages
    source: str = "<upstream config>"
    unsupported: list[str] = dataclasses.field(default_factory=list)
    #: upstream settings that hold here without a key of ours (a fixed behaviour, a computed value), and why
    implicit: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    #: the upstream model family (``wavlm_conformer``, ``fbank_conformer``, ``distill_prune``, ...)
    model_kind: str = ""

    def set(self, dotted: str, value: Any, origin: str) -> None:
        """Write ``value`` at our key ``dotted``; two upstream keys that disagree on one of ours are an error."""
        *parents, leaf = dotted.split(".")
        node = self.config
        for key in parents:
            node = node.setdefault(key, {})
        if leaf in node and node[leaf] != value:
            raise InputError(
                f"{origin} = {value!r} contradicts another upstream setting that gives {dotted} = {node[leaf]!r}",
                path=self.source, fix="make the upstream config consistent (both must agree)",
            )
        node[leaf] = value


Assign = Callable[[Any, Conversion], list[tuple[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one upstream key converts: ``assign(value, conversion)`` returns our (key, value) pairs."""

    assign: Assign
    note: str = ""


def to(target: str, convert: Callable[[Any], Any] = lambda value: value, note: str = "") -> Rule:
    """The value goes to our key ``target`` (through ``convert``)."""
    return Rule(lambda value, _: [(target, convert(value))], note)


def only(accepted: Any, note: str, otherwise: str | None = None) -> Rule:
    """Accepted only at ``accepted`` (what we always do: ``note``); any other value is unsupported
    (``otherwise`` says why, default ``note``)."""

    def assign(value: Any, _: Conversion) -> list[tuple[str, Any]]:
        if value != accepted:
            raise Unsupported(otherwise or note)
        return []

    return Rule(assign, note)


def derived(note: str) -> Rule:
    """Follows from something else (the model, another key); nothing to write."""
    return Rule(lambda value, _: [], note)


def unsupported(note: str) -> Rule:
    """No equivalent here."""

    def assign(value: Any, _: Conversion) -> list[tuple[str, Any]]:
        raise Unsupported(note)

    return Rule(assign, note)


# ---------------------------------------------------------------------------------------------------------
# Value conversions


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """An upstream model class and ours."""

    kind: str
    path: str
    unsupported: str = ""
    #: our arguments that make the model upstream's where our default differs
    args: dict[str, Any] = dataclasses.field(default_factory=dict)


MODELS: dict[str, ModelFamily] = {
    "diarizen.models.eend.model_wavlm_conformer.Model": ModelFamily(
        "wavlm_conformer", "diarizen_lab.models.wavlm_conformer.WavLMConformer"
    ),
    "diarizen.models.eend.model_fbank_conformer.Model": ModelFamily(  # upstream: one frame per 10 ms hop
        "fbank_conformer", "diarizen_lab.models.fbank_conformer.FbankConformer", args={"frame_stacking": 1}
    ),
    "diarizen.models.pruning.model_distill_prune.Model": ModelFamily(
        "distill_prune", "diarizen_lab.pruning.PruningStudent"
    ),
    "diarizen.models.eend.model_pyannote.Model": ModelFamily(
        "pyannote", "diarizen_lab.models.upstream_pyannet.PyanNetBaseline"
    ),
    "diarizen.models.eend.model_wavlm_conformer_mc.Model": ModelFamily(
        "wavlm_conformer_mc",
        "diarizen_lab.models.wavlm_conformer.WavLMConformer",
        "multi-channel fusion is not implemented: converted to the single-channel WavLM-Conformer",
    ),
}
PRUNING_OBJECTIVE = "diarizen_lab.pruning.DistillPruneObjective"
DATASET = "diarizen_lab.data.dataset.ChunkDataset"
TRAINERS = {
    "trainer_single_opt.Trainer": "single",
    "trainer_dual_opt.Trainer": "dual",
    "trainer_distill_prune.Trainer": "distill_prune",
}


def _model_path(value: Any, conversion: Conversion) -> list[tuple[str, Any]]:
    family = MODELS.get(value)
    if family is None:
        raise Unsupported(f"unknown upstream model; known: {', '.join(MODELS)}")
    conversion.model_kind = family.kind
    if family.unsupported:
        conversion.unsupported.append(f"model.path = {value!r} ({family.unsupported})")
    return [("model.path", family.path), *((f"model.args.{key}", value) for key, value in family.args.items())]


def _trainer_path(value: Any, conversion: Conversion) -> list[tuple[str, Any]]:
    if value not in TRAINERS:
        raise Unsupported(f"unknown upstream trainer; known: {', '.join(TRAINERS)}")
    if TRAINERS[value] == "distill_prune":
        return [("objective.path", PRUNING_OBJECTIVE)]
    return []


def _wavlm_src(value: Any, conversion: Conversion) -> list[tuple[str, Any]]:
    """A path stays a path (our WavLM loader reads upstream's {"state_dict","config"} files and fairseq's);
    a preset name becomes the preset's architecture (random weights, as upstream builds it)."""
    from diarizen_lab.models.upstream import is_upstream_preset, upstream_wavlm_architecture

    if is_upstream_preset(value):
        return [("model.args.wavlm", upstream_wavlm_architecture(value))]
    return [("model.args.wavlm_checkpoint", value)]


def _freeze_wavlm(value: Any, conversion: Conversion) -> list[tuple[str, Any]]:
    if conversion.model_kind in ("wavlm_conformer", "wavlm_conformer_mc"):
        return [("model.args.freeze_wavlm", bool(value))]
    if value:
        raise Unsupported("this model has no WavLM to freeze")
    return []


def _finetune_from(value: Any, conversion: Conversion) -> list[tuple[str, Any]]:
    """Upstream names the ``pytorch_model.bin`` of a released folder; we load the folder (its config.toml
    describes the architecture)."""
    path = PurePosixPath(value)
    return [("finetune.init_from", str(path.parent if path.name == "pytorch_model.bin" else path))]


def _finetune_flag(value: Any, conversion: Conversion) -> list[tuple[str, Any]]:
    return []  # [finetune] is written only with its ckpt_dir, which a disabled fine-tuning ignores


def _data_dir_of(file_name: str, dataset: str) -> Assign:
    """The folder of upstream's ``wav.scp`` / ``rttm`` / ``uem`` file is our data directory (which holds all
    three under these names): the three must agree on it."""

    def assign(value: Any, conversion: Conversion) -> list[tuple[str, Any]]:
        path = PurePosixPath(value)
        if path.name != file_name and file_name != "uem":
            raise Unsupported(f"our data directories hold wav.scp, rttm and uem: name the file {file_name}")
        if path.name != file_name:
            conversion.notes.append(
                f"{value}: our data directory reads its UEM from <data_dir>/uem: `ln -s {path.name} "
                f"{path.parent}/uem` (without it, recordings are used whole)"
            )
        return [(f"{dataset}.args.data_dir", str(path.parent))]

    return assign


def _dataset_path(dataset: str) -> Assign:
    def assign(value: Any, conversion: Conversion) -> list[tuple[str, Any]]:
        if value != "dataset.DiarizationDataset":
            raise Unsupported("the only upstream dataset is dataset.DiarizationDataset")
        return [(f"{dataset}.path", DATASET)]

    return assign


def _units(value: Any) -> list[str]:
    return [unit.strip() for unit in str(value).split(",") if unit.strip()]


def _layers(value: Any) -> list[int]:
    return [int(layer) for layer in str(value).split(",")]


def _distill_layers(value: Any, conversion: Conversion) -> list[tuple[str, Any]]:
    layers = _layers(value)
    return [("model.args.distill_layers", layers), ("objective.args.teacher_layers", layers)]


def _cosine(value: Any) -> str:
    # upstream "raw" is -cos, ours "distance" is 1 - cos: the same gradients
    names = {"raw": "distance", "log_sig": "log_sigmoid", "log_sigmoid": "log_sigmoid"}
    if value not in names:
        raise Unsupported(f"cos_type must be one of {', '.join(names)}")
    return names[value]


def _monitor_mode(value: Any) -> str:
    return "max" if value else "min"


def _task(key: str) -> Rule:
    return to(f"task.{key}", float if key == "chunk_size" else int)


# ---------------------------------------------------------------------------------------------------------
# THE table: upstream key ("table.key", model arguments as "model.args@<family>.key") -> rule

_DATALOADER_NOTE = "validation uses [dataloader]; its batching does not change validation results"
_FRAMES_NOTE = "the frame geometry is computed from the model"
_MULTI_CHANNEL_DATA = "multi-channel chunks are not implemented"


def _dataset_rules(upstream: str, ours: str) -> dict[str, Rule]:
    rules = {
        f"{upstream}.path": Rule(_dataset_path(ours), "upstream's DiarizationDataset is our ChunkDataset"),
        f"{upstream}.args.scp_file": Rule(_data_dir_of("wav.scp", ours)),
        f"{upstream}.args.rttm_file": Rule(_data_dir_of("rttm", ours)),
        f"{upstream}.args.uem_file": Rule(_data_dir_of("uem", ours)),
        f"{upstream}.args.chunk_size": _task("chunk_size"),
        f"{upstream}.args.chunk_shift": to(f"{ours}.args.chunk_shift", float),
        f"{upstream}.args.sample_rate": _task("sample_rate"),
        f"{upstream}.args.model_num_frames": derived(_FRAMES_NOTE),
        f"{upstream}.args.model_rf_duration": derived(_FRAMES_NOTE),
        f"{upstream}.args.model_rf_step": derived(_FRAMES_NOTE),
        f"{upstream}.args.channel_mode": only("single", "single-channel chunks", _MULTI_CHANNEL_DATA),
        f"{upstream}.args.num_channels": only(1, "single-channel chunks", _MULTI_CHANNEL_DATA),
    }
    if upstream == "train_dataset":
        rules.update({
            "train_dataset.dataloader.batch_size": to("dataloader.batch_size"),
            "train_dataset.dataloader.num_workers": to("dataloader.num_workers"),
            "train_dataset.dataloader.pin_memory": to("dataloader.pin_memory"),
            "train_dataset.dataloader.drop_last": only(True, "training always drops the last partial batch"),
        })
    else:
        rules.update({f"{upstream}.dataloader.{key}": derived(_DATALOADER_NOTE)
                      for key in ("batch_size", "num_workers", "pin_memory", "drop_last")})
    return rules


_CONFORMER_ARGS: dict[str, Rule] = {
    "attention_in": to("model.args.attention_in"),
    "ffn_hidden": to("model.args.ffn_hidden"),
    "num_head": to("model.args.num_heads"),
    "num_layer": to("model.args.num_layers"),
    "kernel_size": to("model.args.kernel_size"),
    "dropout": to("model.args.dropout"),
    "use_posi": only(False, "no relative positional encoding in the Conformer"),
    "output_activate_function": only(False, "the model outputs powerset log-probabilities"),
    "chunk_size": _task("chunk_size"),
    "max_speakers_per_chunk": _task("max_speakers_per_chunk"),
    "max_speakers_per_frame": _task("max_speakers_per_frame"),
    "sample_rate": _task("sample_rate"),
    "selected_channel": to("model.args.selected_channel"),
    "num_channels": to("model.args.num_channels"),
}
_WAVLM_ARGS: dict[str, Rule] = {
    "wavlm_src": Rule(_wavlm_src, "a preset name or a {state_dict, config} / fairseq file"),
    "wavlm_layer_num": derived("the number of hidden states follows from the WavLM"),
    "wavlm_feat_dim": derived("the WavLM width follows from the WavLM"),
}
_MULTI_CHANNEL = "multi-channel fusion is not implemented"

RULES: dict[str, Rule] = {
    "meta.save_dir": to("meta.exp_dir"),
    "meta.seed": to("meta.seed"),
    "finetune.finetune": Rule(_finetune_flag, "[finetune] is written when finetune = true"),
    "finetune.ckpt_dir": Rule(_finetune_from, "init_from: the released folder (or our model.pt)"),
    "trainer.path": Rule(_trainer_path, "single/dual optimizer follows from [optimizer*]; pruning adds [objective]"),
    "trainer.args.max_epochs": to("trainer.max_epochs"),
    "trainer.args.gradient_percentile": to("clipping.percentile"),
    "trainer.args.gradient_history_size": to("clipping.history"),
    "trainer.args.save_max_score": to("checkpoint.mode", _monitor_mode),
    "trainer.args.save_ckpt_interval": only(1, "a checkpoint is written every epoch"),
    "trainer.args.max_patience": to("trainer.patience"),
    "trainer.args.max_num_checkpoints": to("checkpoint.keep_last_n"),
    "trainer.args.gradient_accumulation_steps": to("trainer.gradient_accumulation_steps"),
    "trainer.args.validation_interval": to("trainer.validation_interval"),
    "trainer.args.freeze_wavlm": Rule(_freeze_wavlm),
    "trainer.args.lr_decay": only(False, "no learning-rate decay", "upstream's learning-rate decay is not implemented"),
    "trainer.args.use_one_cycle_lr": only(
        False, "no one-cycle schedule", "upstream's one-cycle schedule is not implemented"
    ),
    "trainer.args.debug": only(False, "no debug mode", "upstream's debug mode has no equivalent"),
    "trainer.args.use_reg": only(True, "distill-prune always uses the sparsity Lagrangian"),
    "trainer.args.target_sparsity": to("objective.args.target_sparsity"),
    "trainer.args.pre_train_epochs": only(
        0, "pruning starts at once", "distillation without pruning first is not implemented"
    ),
    "trainer.args.sparsity_warmup_epochs": unsupported(
        "our sparsity warm-up counts updates: set [objective.args] warmup_steps = epochs x updates per epoch"
    ),
    "optimizer.args.distill_lr": to("optimizer.args.lr"),
    "optimizer.args.reg_lr": to("objective.args.gate_lr"),
    "distill_loss.path": only("diarizen.models.pruning.utils.DistillLoss", "the distillation loss of [objective]"),
    "distill_loss.args.l1_weight": to("objective.args.l1_weight"),
    "distill_loss.args.l2_weight": to("objective.args.l2_weight"),
    "distill_loss.args.cos_weight": to("objective.args.cos_weight"),
    "distill_loss.args.cos_type": to("objective.args.cosine_type", _cosine),
    "model.path": Rule(_model_path),
    **{f"model.args@wavlm_conformer.{key}": rule for key, rule in {**_WAVLM_ARGS, **_CONFORMER_ARGS}.items()},
    **{f"model.args@wavlm_conformer_mc.{key}": rule for key, rule in {**_WAVLM_ARGS, **_CONFORMER_ARGS}.items()},
    **{f"model.args@wavlm_conformer_mc.channel_fusion_{key}": unsupported(_MULTI_CHANNEL)
       for key in ("dim", "layers", "heads")},
    **{f"model.args@fbank_conformer.{key}": rule for key, rule in _CONFORMER_ARGS.items()},
    **{f"model.args@pyannote.{key}": _CONFORMER_ARGS[key] for key in (*TASK_KEYS, "selected_channel")},
    "model.args@pyannote.num_channels": derived("upstream's baseline reads one channel, selected_channel"),
    "model.args@fbank_conformer.n_fft": only(400, "the FFT covers the 25 ms window (400 samples at 16 kHz)"),
    "model.args@fbank_conformer.n_mels": to("model.args.num_mel_bins"),
    "model.args@fbank_conformer.win_length": to("model.args.window_ms"),
    "model.args@fbank_conformer.hop_length": to("model.args.hop_ms"),
    "model.args@distill_prune.teacher_ckpt": to("objective.args.teacher"),
    "model.args@distill_prune.student_ckpt": to("model.args.wavlm_checkpoint"),
    "model.args@distill_prune.pruning_units": to("model.args.units", _units),
    "model.args@distill_prune.distill_layers": Rule(_distill_layers),
    **_dataset_rules("train_dataset", "train_dataset"),
    **_dataset_rules("validate_dataset", "validation_dataset"),
}
#: optimizer tables: any argument of the torch optimizer passes through (``path`` too)
OPTIMIZER_TABLES = ("optimizer", "optimizer_small", "optimizer_big")

#: our settings that upstream's code fixes without a key (its trainers clip by a gradient-norm percentile and
#: select checkpoints by the validation loss)
IMPLIED: dict[str, Any] = {"clipping.mode": "adaptive", "checkpoint.monitor": "val/loss"}


# ---------------------------------------------------------------------------------------------------------
# Conversion


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            items.extend(_flatten(value, f"{dotted}."))
        else:
            items.append((dotted, value))
    return items


def _rule_for(dotted: str, conversion: Conversion) -> Rule | None:
    section, _, key = dotted.partition(".")
    if section == "model" and key.startswith("args."):
        return RULES.get(f"model.args@{conversion.model_kind}.{key[len('args.'):]}")
    if dotted in RULES:
        return RULES[dotted]
    if section in OPTIMIZER_TABLES and (key == "path" or key.startswith("args.")):
        return to(dotted)
    return None


def convert_upstream_config(data: dict[str, Any], name: str, source: str = "<upstream config>") -> Conversion:
    """Convert a parsed upstream recipe TOML; ``name`` becomes ``[meta] name`` (upstream uses the file name).

    Upstream settings without an equivalent are listed in ``unsupported`` (the rest is converted); a value that
    contradicts another (two chunk sizes) raises :class:`~diarizen_lab.errors.InputError`.
    """
    conversion = Conversion(config={"meta": {"name": name}}, source=source)
    items = _flatten(data)
    model_path = [value for dotted, value in items if dotted == "model.path"]
    ordered = [("model.path", model_path[0])] if model_path else []
    ordered += [(dotted, value) for dotted, value in items if dotted != "model.path"]
    for dotted, value in ordered:
        rule = _rule_for(dotted, conversion)
        if rule is None:
            conversion.unsupported.append(f"{dotted} = {value!r} (no equivalent)")
            continue
        try:
            assignments = rule.assign(value, conversion)
        except Unsupported as reason:
            conversion.unsupported.append(f"{dotted} = {value!r} ({reason})")
            continue
        if not assignments and rule.note:
            conversion.implicit.append(f"{dotted} = {value!r} ({rule.note})")
        for target, result in assignments:
            conversion.set(target, result, origin=dotted)
    if "model" in conversion.config:
        for dotted, value in IMPLIED.items():
            section, key = dotted.split(".")
            conversion.config.setdefault(section, {}).setdefault(key, value)
        task = conversion.config.setdefault("task", {})
        for key, value in TASK_DEFAULTS.items():
            task.setdefault(key, value)
    if "finetune" in conversion.config and not data.get("finetune", {}).get("finetune", False):
        del conversion.config["finetune"]
        conversion.implicit.append(f"finetune.ckpt_dir = {data['finetune']['ckpt_dir']!r} (unused: finetune = false)")
    return conversion


def convert_model_section(model: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Upstream ``[model]`` (``path``, ``args``) -> our model block (task settings left out) and the task.

    Raises :class:`UnsupportedKeysError` if any argument has no equivalent.
    """
    conversion = convert_upstream_config({"model": model}, name="model", source=source)
    if conversion.unsupported:
        raise UnsupportedKeysError(source, conversion.unsupported)
    block = conversion.config["model"]
    block.setdefault("args", {})
    return block, conversion.config["task"]


def architecture_from_task(block: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """The stored architecture ``{"path", "args", "task"}`` (see :mod:`diarizen_lab.models.io`) of a converted
    model block and its task settings."""
    return {"path": block["path"], "args": dict(block.get("args", {})), "task": Task(**task).to_dict()}


def convert_upstream_text(text: str, source: str, *, allow_unsupported: bool = False) -> str:
    """Convert upstream TOML text to ours; unsupported settings are an error unless ``allow_unsupported``
    (then they are listed in a comment at the top of the output)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"TOML syntax error: {error}", path=source) from None
    conversion = convert_upstream_config(data, name=PurePosixPath(source).stem, source=source)
    if conversion.unsupported and not allow_unsupported:
        raise UnsupportedKeysError(source, conversion.unsupported)
    header = [f"# converted from upstream DiariZen's {source} by `diarizen-lab config import-upstream`"]
    header += [f"# NOT CARRIED OVER: {item}" for item in conversion.unsupported]
    header += [f"# IMPLICIT HERE: {item}" for item in conversion.implicit]
    header += [f"# NOTE: {note}" for note in conversion.notes]
    return "\n".join(header) + "\n\n" + tomli_w.dumps(_ordered(conversion.config))


_SECTION_ORDER = (
    "meta", "task", "model", "objective", "train_dataset", "validation_dataset", "dataloader", "optimizer",
    "optimizer_small", "optimizer_big", "clipping", "trainer", "checkpoint", "finetune",
)


def _ordered(config: dict[str, Any]) -> dict[str, Any]:
    return {name: config[name] for name in sorted(config, key=lambda n: (_SECTION_ORDER + (n,)).index(n))}
