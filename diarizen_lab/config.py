"""Experiment configuration: one TOML file per experiment, validated before anything runs.

A config is a set of sections. A recipe declares which sections it accepts and what each one is:

- a :class:`Block` section names a callable and its keyword arguments::

      [model]
      path = "diarizen_lab.models.wavlm_conformer.WavLMConformer"
      [model.args]
      num_layers = 4

  The arguments are checked against the callable's signature when the file is loaded: unknown keys (with a
  suggestion), missing required arguments and wrong types are reported with the file, line and section.
  :func:`instantiate` then calls it, adding the objects that only the recipe can supply (``params=``, ...).

- a dataclass section holds plain settings, checked against the dataclass fields the same way; so does a
  sub-table given for a block argument annotated with a dataclass (``[train_dataset.args.augmentation]``).

Relative paths (arguments or fields annotated :class:`pathlib.Path` or ``os.PathLike``, alone or in a union
with ``str``) resolve against the config's root:
``[meta] root`` if given (itself relative to the config file's directory), else the config file's directory —
never against the current working directory. Arguments annotated :class:`Asset` name a pretrained file or
folder: an existing path relative to the root, else an asset of the offline checkpoint store
(:func:`diarizen_lab.store.resolve_asset`); constructors receive the resolved path. ``--set section.key=value``
overrides are parsed as TOML values (``--set trainer.max_epochs=3`` for a settings section,
``--set 'model.args.wavlm="random:wavlm_tiny"'`` for a block; a bare word is taken as a string). The resolved
config (overrides applied, paths absolute) is saved in the experiment directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import tomli_w

from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.utils.atomic import atomic_open

__all__ = [
    "Asset",
    "Block",
    "Config",
    "load_config",
    "instantiate",
    "import_object",
    "save_resolved",
    "add_config_arguments",
    "assets_of",
    "resolve_reference",
]

_MISSING = inspect.Parameter.empty


@dataclasses.dataclass
class Block:
    """An instantiable config block: ``path`` names a callable, ``args`` its keyword arguments."""

    path: str
    args: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: where the block was defined, for error messages (e.g. ``conf/x.toml: [model]``)
    where: str = ""


class Asset(type(Path())):
    """A pretrained file or folder named in a config: the annotation of such arguments, and their loaded value.

    A value is resolved when the config is loaded (:func:`resolve_reference`): an existing path relative to the
    config's root, else the asset of that name in the offline checkpoint store. A reference that resolves to
    neither (a file an earlier recipe stage writes, or an asset not installed yet) is kept as the path under
    the root; :meth:`require` then raises the store's error naming every place searched.
    """

    #: the text written in the config
    reference: str = ""
    #: why it did not resolve (``None`` when it did)
    problem: str | None = None

    def require(self) -> Path:
        """This path if it exists; otherwise a one-line error naming the reference and where it was searched."""
        if self.exists():
            return Path(self)
        raise InputError(
            f"asset {self.reference!r} not found"
            + (f" ({self.problem})" if self.problem else f": no such file {os.fspath(self)}"),
            fix="create it (an earlier recipe stage?), put it in the checkpoint store, or fix the name",
        )


def resolve_reference(text: str | os.PathLike, root: Path) -> Asset:
    """The :class:`Asset` named by ``text``: ``root / text`` if it exists, else the store's asset of that name,
    else ``root / text`` (not existing: :meth:`Asset.require` reports why)."""
    from diarizen_lab.store.store import AssetNotFoundError, CheckpointStore

    text = os.fspath(text)
    local = _resolve_path(text, root)
    problem = None
    if local.exists():
        path = CheckpointStore().resolve(local)  # a cache tree root: its snapshot
    else:
        try:
            path = CheckpointStore().resolve(text)
        except AssetNotFoundError as error:
            path = local
            # a file name (an earlier stage's output?) is reported as a path, anything else as a store asset
            problem = f"no such file {local} (paths resolve against [meta] root)" if local.suffix else str(error)
    asset = Asset(path)
    asset.reference, asset.problem = text, problem
    return asset


def assets_of(node: Any) -> list[Asset]:
    """Every :class:`Asset` value in a loaded config (sections, block arguments, nested values), in order."""
    if isinstance(node, Asset):
        return [node]
    if isinstance(node, Block):
        node = node.args
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        node = {field.name: getattr(node, field.name) for field in dataclasses.fields(node)}
    if isinstance(node, Mapping):
        return [asset for value in node.values() for asset in assets_of(value)]
    if isinstance(node, (list, tuple)):
        return [asset for value in node for asset in assets_of(value)]
    return []


class Config(dict):
    """Validated sections by name, with the config's source file and root directory."""

    def __init__(self, sections: Mapping[str, Any], source: Path, root: Path) -> None:
        super().__init__(sections)
        self.source = source
        self.root = root


# ---------------------------------------------------------------------------------------------------------
# Locating errors


class _Locator:
    """Finds the line of a section or key in the TOML text, for error messages."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, section: str, key: str | None = None) -> int | None:
        header = re.compile(r"^\s*\[\s*" + re.escape(section) + r"\s*\]\s*(#.*)?$")
        any_header = re.compile(r"^\s*\[")
        start = None
        for number, line in enumerate(self.lines, start=1):
            if header.match(line):
                start = number
                break
        if start is None:
            # the section may be written inline (``args = {...}``) under its parent
            parent, _, leaf = section.rpartition(".")
            if parent and key is not None:
                return self.line_of(parent, leaf)
            return None
        if key is None:
            return start
        key_line = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for number in range(start + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if any_header.match(line):
                break
            if key_line.match(line):
                return number
        return start

    def error(self, section: str, key: str | None, message: str, fix: str | None = None) -> InputError:
        return InputError(
            f"[{section}] {message}", path=self.path, line=self.line_of(section, key), fix=fix
        )


# ---------------------------------------------------------------------------------------------------------
# Type checking of TOML values against annotations


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _coerce(value: Any, annotation: Any, root: Path) -> Any:
    """Return ``value`` converted to ``annotation`` (int -> float, list -> tuple, str -> Path), or raise TypeError."""
    if annotation is _MISSING or annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and Asset in args:
            return resolve_reference(value, root)
        if isinstance(value, str) and any(_is_path(option) for option in args):
            return _resolve_path(value, root)
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, root)
            except TypeError:
                continue
        raise TypeError
    if origin is typing.Literal:
        if value in args:
            return value
        raise TypeError
    if annotation is type(None):
        if value is None:
            return None
        raise TypeError
    if annotation is Asset:
        if isinstance(value, str):
            return resolve_reference(value, root)
        raise TypeError
    if _is_path(annotation):
        if isinstance(value, str):
            return _resolve_path(value, root)
        raise TypeError
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if annotation in (str, bool):
        if type(value) is annotation:
            return value
        raise TypeError
    if origin in (list, tuple, typing.Sequence, Iterable) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise TypeError
            return tuple(_coerce(v, a, root) for v, a in zip(value, args))
        item = args[0] if args else Any
        items = [_coerce(v, item, root) for v in value]
        return tuple(items) if (origin is tuple or annotation is tuple) else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise TypeError
        return value
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        raise TypeError
    return value  # annotations we cannot check (protocols, forward references): accept as written


def _dataclass_in(annotation: Any) -> type | None:
    """The dataclass ``annotation`` names, alone or in a union with ``None``."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    found = [a for a in options or (annotation,) if dataclasses.is_dataclass(a) and isinstance(a, type)]
    return found[0] if len(found) == 1 else None


def _is_path(annotation: Any) -> bool:
    return annotation is Path or annotation is os.PathLike or typing.get_origin(annotation) is os.PathLike


def _resolve_path(value: str, root: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (root / path).resolve()


def _check_fields(
    values: Mapping[str, Any],
    fields: Mapping[str, tuple[Any, bool]],
    locator: _Locator,
    section: str,
    root: Path,
    runtime: Iterable[str] = (),
    moved: Mapping[str, str] | None = None,
    renamed: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Validate ``values`` against ``fields`` (name -> (annotation, required)); return coerced values.

    ``moved`` maps keys that earlier versions accepted here to the section that owns them now; ``renamed`` maps
    keys that earlier versions accepted here to the key that replaces them.
    """
    runtime = set(runtime)
    moved, renamed = moved or {}, renamed or {}
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key in renamed and key not in fields:
            raise locator.error(section, key, f"'{key}' is now '{renamed[key]}'", fix=f"rename it {renamed[key]}")
        if key in moved and key not in fields:
            raise locator.error(
                section, key, f"'{key}' belongs to [{moved[key]}] now",
                fix=f"move {key} to [{moved[key]}] (stated once, for the model and every dataset)",
            )
        if key in runtime:
            raise locator.error(
                section, key, f"'{key}' is supplied by the recipe and cannot be set in the config",
                fix=f"remove '{key}'",
            )
        if key not in fields:
            settable = [name for name in fields if name not in runtime]
            close = difflib.get_close_matches(key, settable, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(sorted(settable)) or "none"
            raise locator.error(section, key, f"unknown key '{key}'{hint}", fix=f"known keys: {known}")
        annotation, _ = fields[key]
        table = _dataclass_in(annotation)
        if table is not None and isinstance(value, dict):  # a sub-table of settings, checked like a section
            inner = f"{section}.{key}"
            settings = _check_fields(value, _dataclass_fields(table), locator, inner, root)
            checked[key] = _construct(table, settings, locator, inner)
            continue
        try:
            checked[key] = _coerce(value, annotation, root)
        except TypeError:
            raise locator.error(
                section, key,
                f"'{key}' must be {_type_name(annotation)}, got {type(value).__name__} {value!r}",
            ) from None
    missing = [name for name, (_, required) in fields.items() if required and name not in values]
    if missing:
        raise locator.error(section, None, f"missing required key(s): {', '.join(repr(m) for m in missing)}")
    return checked


# ---------------------------------------------------------------------------------------------------------
# Blocks


def import_object(path: str) -> Any:
    """Import ``"package.module.Name"`` and return ``Name``; ValueError with a readable reason on failure."""
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ValueError(f"'{path}' is not a dotted path like 'package.module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import module '{module_name}' ({error})") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"module '{module_name}' has no attribute '{attribute}'") from None


def _signature_fields(target: Callable) -> tuple[dict[str, tuple[Any, bool]], bool]:
    """Keyword parameters of ``target`` as (annotation, required), and whether it takes ``**kwargs``.

    A class whose ``__init__`` forwards ``**kwargs`` to its base class is checked against the keyword-only
    parameters of the base class too (up the MRO, while each ``__init__`` forwards), so that subclasses need
    not repeat them.
    """
    if not inspect.isclass(target):
        return _own_fields(target)
    fields: dict[str, tuple[Any, bool]] = {}
    inherited = False
    for cls in inspect.getmro(target):
        if cls is object or "__init__" not in vars(cls):
            continue
        own, var_keyword = _own_fields(cls.__init__, skip_self=True, keyword_only=inherited)
        fields, inherited = {**own, **fields}, True
        if not var_keyword:
            return fields, False
    return fields, True


def _own_fields(
    function: Callable, skip_self: bool = False, keyword_only: bool = False
) -> tuple[dict[str, tuple[Any, bool]], bool]:
    signature = inspect.signature(function)
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {}
    fields: dict[str, tuple[Any, bool]] = {}
    var_keyword = False
    for index, (name, parameter) in enumerate(signature.parameters.items()):
        if skip_self and index == 0:
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            continue
        if keyword_only and parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        annotation = hints.get(name, parameter.annotation)
        fields[name] = (annotation, parameter.default is _MISSING)
    return fields, var_keyword


def accepts(target: Callable | str, name: str) -> bool:
    """Whether ``target`` (or the dotted path of one) takes keyword argument ``name`` (see the config loader's
    rule for ``**kwargs`` forwarded to a base class)."""
    fields, _ = _signature_fields(import_object(target) if isinstance(target, str) else target)
    return name in fields


def _refuse(raw: Any, section: str, refused: Mapping[str, str], locator: _Locator) -> None:
    """A one-line error when block ``section`` sets an argument of ``refused`` (name -> why not)."""
    args = raw.get("args") if isinstance(raw, dict) else None
    for key in sorted(set(refused) & set(args if isinstance(args, dict) else ())):
        line = locator.line_of(f"{section}.args.{key}") or locator.line_of(f"{section}.args", key)
        message = f"[{section}.args] '{key}' is not allowed here: {refused[key]}"
        raise InputError(message, path=locator.path, line=line, fix=f"remove '{key}'")


def _load_block(
    raw: Any, section: str, locator: _Locator, root: Path, runtime: Iterable[str], moved: Mapping[str, str]
) -> Block:
    if not isinstance(raw, dict):
        raise locator.error(section, None, "must be a table with 'path' and optional 'args'")
    unknown = set(raw) - {"path", "args"}
    if unknown:
        key = sorted(unknown)[0]
        raise locator.error(section, key, f"unknown key '{key}'", fix="a block has only 'path' and [args]")
    if not isinstance(raw.get("path"), str):
        raise locator.error(section, "path", "missing 'path' (a dotted name like 'package.module.Class')")
    args = raw.get("args", {})
    if not isinstance(args, dict):
        raise locator.error(section, "args", "'args' must be a table")
    try:
        target = import_object(raw["path"])
    except ValueError as error:
        raise locator.error(section, "path", f"unknown path '{raw['path']}': {error}") from None
    if not callable(target):
        raise locator.error(section, "path", f"'{raw['path']}' is not callable")
    fields, var_keyword = _signature_fields(target)
    runtime = set(runtime)
    # arguments the recipe supplies are not required from the config
    fields = {name: (a, required and name not in runtime) for name, (a, required) in fields.items()}
    if var_keyword:
        # the callable forwards **kwargs: only the named parameters can be checked
        named = {key: value for key, value in args.items() if key in fields or key in runtime or key in moved}
        checked = _check_fields(named, fields, locator, f"{section}.args", root, runtime, moved)
        checked.update({key: value for key, value in args.items() if key not in named})
    else:
        checked = _check_fields(args, fields, locator, f"{section}.args", root, runtime, moved)
    return Block(path=raw["path"], args=checked, where=f"{locator.path}: [{section}]")


def instantiate(block: Block | Mapping[str, Any], **runtime_kwargs: Any) -> Any:
    """Call the block's target with its args plus the recipe-supplied ``runtime_kwargs``."""
    if not isinstance(block, Block):
        block = Block(path=block["path"], args=dict(block.get("args", {})))
    target = import_object(block.path)
    overlap = set(block.args) & set(runtime_kwargs)
    if overlap:
        raise ValueError(f"{block.where or block.path}: {sorted(overlap)} given by both config and recipe")
    return target(**block.args, **runtime_kwargs)


# ---------------------------------------------------------------------------------------------------------
# Loading


def _dataclass_fields(cls: type) -> dict[str, tuple[Any, bool]]:
    hints = typing.get_type_hints(cls)
    return {
        field.name: (
            hints[field.name],
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING,
        )
        for field in dataclasses.fields(cls)
        if field.init
    }


def _apply_override(data: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise InputError(f"--set '{override}': expected section.key=value")
    dotted, _, text = override.partition("=")
    keys = dotted.strip().split(".")
    if len(keys) < 2 or not all(keys):
        raise InputError(f"--set '{override}': expected section.key=value (e.g. trainer.args.max_epochs=3)")
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        if re.fullmatch(r"[\w./:+-]+", text):
            value = text  # a bare word: a string
        else:
            raise InputError(
                f"--set '{override}': '{text}' is not a TOML value", fix='quote strings: key=\'"text"\''
            ) from None
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise InputError(f"--set '{override}': '{key}' is not a table")
        node = child
    node[keys[-1]] = value


def _toml_error(error: tomllib.TOMLDecodeError, path: Path) -> InputError:
    """A one-line error with the line number (Python 3.11's tomllib puts it only in the message)."""
    text = str(error)
    found = re.search(r"\(at line (\d+), column \d+\)$", text)
    line = int(found.group(1)) if found else None
    message = text[: found.start()].strip() if found else text
    return InputError(f"TOML syntax error: {message}", path=path, line=line, fix="fix the TOML syntax")


def load_config(
    path: str | Path | None,
    sections: Mapping[str, type],
    overrides: Iterable[str] = (),
    runtime: Mapping[str, Iterable[str]] | None = None,
    moved: Mapping[str, str] | None = None,
    refused: Mapping[str, Mapping[str, str]] | None = None,
) -> Config:
    """Load and validate a TOML config.

    Parameters
    ----------
    path
        The TOML file, or ``None`` for defaults and overrides only.
    sections
        Accepted section names -> :class:`Block` or a dataclass. A section whose dataclass has no required
        field may be omitted; a missing :class:`Block` section is an error unless the name is also absent from
        the file and the recipe treats it as optional (``Optional[Block]``).
    overrides
        ``section.key=value`` strings applied before validation.
    runtime
        Per block section, the argument names the recipe supplies (not allowed in the file).
    moved
        Block arguments of earlier versions -> the section that owns them now (a one-line error saying where
        to move them).
    refused
        Per block section, arguments its callable takes that this recipe does not allow -> why (a one-line
        error).
    """
    if path is None:  # settings from defaults and ``--set`` alone
        path, text = Path("<command line>"), ""
    else:
        path = Path(path)
        text = _read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _toml_error(error, path) from None
    return _validate(data, path, text, sections, overrides, runtime or {}, moved or {}, refused or {})


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError("config file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read config ({error})", path=path) from None


def _validate(
    data: dict[str, Any],
    path: Path,
    text: str,
    sections: Mapping[str, type],
    overrides: Iterable[str],
    runtime: Mapping[str, Iterable[str]],
    moved: Mapping[str, str],
    refused: Mapping[str, Mapping[str, str]],
) -> Config:
    for override in overrides:
        _apply_override(data, override)

    locator = _Locator(path, text)
    root = path.parent.resolve()
    meta = data.get("meta")
    if isinstance(meta, dict) and "root" in meta:
        declared = meta.pop("root")  # consumed here: it is the config's root, not a recipe setting
        if not isinstance(declared, str):
            raise locator.error("meta", "root", "'root' must be a string (a directory)")
        root = _resolve_path(declared, root)

    unknown = [name for name in data if name not in sections]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(sections), n=1)
        hint = f" (did you mean '[{close[0]}]'?)" if close else ""
        raise locator.error(
            unknown[0], None, f"unknown section{hint}", fix=f"known sections: {', '.join(sections)}"
        )

    validated: dict[str, Any] = {}
    for name, kind in sections.items():
        optional = typing.get_origin(kind) in (typing.Union, types.UnionType)
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind) if optional else kind
        raw = data.get(name)
        if raw is None:
            if optional:
                validated[name] = None
                continue
            if base is Block:
                raise InputError(
                    f"missing section [{name}]", path=path, fix=f"add [{name}] with 'path' and [{name}.args]"
                )
            raw = {}
        if base is Block:
            _refuse(raw, name, refused.get(name, {}), locator)
            validated[name] = _load_block(raw, name, locator, root, runtime.get(name, ()), moved)
        elif dataclasses.is_dataclass(base):
            if not isinstance(raw, dict):
                raise locator.error(name, None, "must be a table")
            values = _check_fields(
                raw, _dataclass_fields(base), locator, name, root, renamed=getattr(base, "RENAMED_KEYS", None)
            )
            validated[name] = _construct(base, values, locator, name)
        else:
            raise TypeError(f"section kind for [{name}] must be Block or a dataclass, got {kind!r}")
    return Config(validated, source=path.resolve(), root=root)


def _construct(cls: type, values: dict[str, Any], locator: _Locator, section: str) -> Any:
    """``cls(**values)``; a value its ``__post_init__`` rejects is reported at the section's line in the file."""
    try:
        return cls(**values)
    except InputError:
        raise
    except (DiarizenLabError, ValueError) as error:
        message = re.sub(r"^\[" + re.escape(section) + r"\]\s*", "", str(error))
        key = next((name for name in values if re.search(rf"\b{re.escape(name)}\b", message)), None)
        raise locator.error(section, key, message) from None


# ---------------------------------------------------------------------------------------------------------
# Saving


def _plain(value: Any) -> Any:
    """Convert a validated value back to TOML-serialisable data (paths absolute, tuples as lists)."""
    if isinstance(value, Asset) and value.problem:
        return value.reference  # not resolved: as written, to resolve again when the file is loaded
    if isinstance(value, Block):
        return {"path": value.path, "args": _plain(value.args)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
        return {name: _plain(item) for name, item in fields.items() if item is not None}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def to_toml(config: Config) -> str:
    """The resolved config as TOML text (omitted optional sections and ``None`` values are left out)."""
    sections = {name: _plain(value) for name, value in config.items() if value is not None}
    if "meta" in sections:
        sections["meta"]["root"] = str(config.root)
    return tomli_w.dumps(sections)


def save_resolved(config: Config, exp_dir: str | Path) -> Path:
    """Write the resolved config to ``exp_dir/config.toml`` atomically and return its path."""
    target = Path(exp_dir) / "config.toml"
    with atomic_open(target, "w") as f:
        f.write(f"# resolved from {config.source}\n")
        f.write(to_toml(config))
    return target


def add_config_arguments(parser: Any) -> None:
    """Add ``-C/--config`` and repeatable ``--set section.key=value`` to an argparse parser."""
    parser.add_argument("-C", "--config", required=True, type=Path, help="experiment TOML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (TOML syntax; repeatable), e.g. --set trainer.max_epochs=3",
    )
