"""Config loading: validation errors name the file, line and section; overrides; path resolution."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from diarizen_lab.config import Block, add_config_arguments, instantiate, load_config, save_resolved
from diarizen_lab.errors import InputError


class Trainer:
    """A stand-in target with the kinds of parameters real blocks have."""

    def __init__(
        self,
        model: object,
        max_epochs: int,
        lr: float = 1e-3,
        precision: str = "no",
        betas: tuple[float, float] = (0.9, 0.999),
        exp_dir: Path | None = None,
        layers: list[int] | None = None,
    ) -> None:
        self.model = model
        self.max_epochs = max_epochs
        self.lr = lr
        self.precision = precision
        self.betas = betas
        self.exp_dir = exp_dir
        self.layers = layers


@dataclasses.dataclass
class Meta:
    name: str
    seed: int = 0
    exp_dir: Path = Path("exp")
    patience: int | None = None


SECTIONS = {"meta": Meta, "trainer": Block}
RUNTIME = {"trainer": ["model"]}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "exp.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD = """\
[meta]
name = "demo"
root = ".."
exp_dir = "exp/demo"

[trainer]
path = "test_config.Trainer"

[trainer.args]
max_epochs = 3
lr = 1
betas = [0.8, 0.99]
exp_dir = "exp/demo/inner"
"""


def load(path: Path, overrides=()):
    return load_config(path, SECTIONS, overrides, runtime=RUNTIME)


def test_good_config_is_validated_coerced_and_instantiated(tmp_path):
    config = load(write(tmp_path, GOOD))
    assert config.root == tmp_path.resolve()
    assert config["meta"] == Meta(name="demo", seed=0, exp_dir=tmp_path.resolve() / "exp/demo")
    trainer = instantiate(config["trainer"], model="the model")
    assert trainer.model == "the model"
    assert trainer.max_epochs == 3
    assert trainer.lr == 1.0 and isinstance(trainer.lr, float)
    assert trainer.betas == (0.8, 0.99)
    assert trainer.exp_dir == tmp_path.resolve() / "exp/demo/inner"


def test_paths_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.chdir(tmp_path / "conf")
    first = load(Path("exp.toml"))["meta"].exp_dir
    monkeypatch.chdir("/")
    second = load(path)["meta"].exp_dir
    assert first == second == tmp_path.resolve() / "exp/demo"


def test_unknown_key_names_file_line_section_and_suggests(tmp_path):
    path = write(tmp_path, GOOD.replace("max_epochs = 3", "max_epochs = 3\nmax_epoch = 4"))
    with pytest.raises(InputError) as error:
        load(path)
    message = str(error.value)
    assert message.startswith(f"{path}:11: [trainer.args] unknown key 'max_epoch' (did you mean 'max_epochs'?)")
    assert "\n" not in message


def test_missing_required_key(tmp_path):
    path = write(tmp_path, GOOD.replace("max_epochs = 3\n", ""))
    with pytest.raises(InputError, match=r"exp.toml:9: \[trainer.args\] missing required key\(s\): 'max_epochs'"):
        load(path)


def test_runtime_argument_is_not_required_but_is_refused(tmp_path):
    path = write(tmp_path, GOOD.replace("max_epochs = 3", "max_epochs = 3\nmodel = 'x'"))
    with pytest.raises(InputError, match=r"exp.toml:11: \[trainer.args\] 'model' is supplied by the recipe"):
        load(path)


@pytest.mark.parametrize(
    "replacement, expected",
    [
        ("max_epochs = 3.5", r"exp.toml:10: \[trainer.args\] 'max_epochs' must be int, got float 3.5"),
        ("max_epochs = true", r"'max_epochs' must be int, got bool True"),
        ("max_epochs = 3\nbetas = [1, 2, 3]", r"'betas' must be tuple\[float, float\]"),
        ("max_epochs = 3\nlayers = ['a']", r"'layers' must be list\[int\] \| None"),
    ],
)
def test_wrong_types(tmp_path, replacement, expected):
    text = GOOD.replace("betas = [0.8, 0.99]\n", "").replace("max_epochs = 3", replacement)
    with pytest.raises(InputError, match=expected):
        load(write(tmp_path, text))


def test_dataclass_section_errors(tmp_path):
    with pytest.raises(InputError, match=r"exp.toml:3: \[meta\] 'seed' must be int, got str 'x'"):
        load(write(tmp_path, GOOD.replace('name = "demo"', 'name = "demo"\nseed = "x"')))
    with pytest.raises(InputError, match=r"\[meta\] missing required key\(s\): 'name'"):
        load(write(tmp_path, GOOD.replace('name = "demo"\n', "")))


def test_unknown_section_and_unknown_path(tmp_path):
    with pytest.raises(InputError, match=r"exp.toml:1: \[trainr\] unknown section \(did you mean '\[trainer\]'\?\)"):
        load(write(tmp_path, "[trainr]\nx = 1\n" + GOOD))
    with pytest.raises(InputError, match=r"exp.toml:7: \[trainer\] unknown path 'test_config.Trainerr'"):
        load(write(tmp_path, GOOD.replace('"test_config.Trainer"', '"test_config.Trainerr"')))
    with pytest.raises(InputError, match=r"unknown path 'nosuchpackage.X': cannot import module 'nosuchpackage'"):
        load(write(tmp_path, GOOD.replace('"test_config.Trainer"', '"nosuchpackage.X"')))


def test_missing_block_section(tmp_path):
    with pytest.raises(InputError, match=r"exp.toml: missing section \[trainer\]"):
        load(write(tmp_path, GOOD.split("[trainer]")[0]))


def test_toml_syntax_error_reports_the_line(tmp_path):
    path = write(tmp_path, GOOD.replace("lr = 1", "lr = = 1"))
    with pytest.raises(InputError, match=rf"^{path}:11: TOML syntax error"):
        load(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.toml: config file not found"):
        load(tmp_path / "nope.toml")


def test_overrides(tmp_path):
    path = write(tmp_path, GOOD)
    config = load(path, ["trainer.args.max_epochs=7", "meta.name=other", 'trainer.args.precision="bf16"'])
    assert config["trainer"].args["max_epochs"] == 7
    assert config["meta"].name == "other"
    assert config["trainer"].args["precision"] == "bf16"
    with pytest.raises(InputError, match=r"--set 'trainer.args.max_epochs': expected section.key=value"):
        load(path, ["trainer.args.max_epochs"])
    with pytest.raises(InputError, match=r"--set 'max_epochs=3': expected section.key=value"):
        load(path, ["max_epochs=3"])
    with pytest.raises(InputError, match=r"--set 'trainer.args.lr=\[1,': '\[1,' is not a TOML value"):
        load(path, ["trainer.args.lr=[1,"])
    with pytest.raises(InputError, match=r"\[trainer.args\] 'max_epochs' must be int, got str 'many'"):
        load(path, ["trainer.args.max_epochs=many"])
    with pytest.raises(InputError, match=r"\[trainer.args\] unknown key 'epochs'"):
        load(path, ["trainer.args.epochs=3"])


def test_saved_config_round_trips_from_anywhere(tmp_path):
    config = load(write(tmp_path, GOOD), ["trainer.args.max_epochs=5"])
    saved = save_resolved(config, tmp_path / "elsewhere" / "exp")
    data = tomllib.loads(saved.read_text())
    assert data["meta"]["root"] == str(tmp_path.resolve())
    assert data["trainer"]["args"]["max_epochs"] == 5
    reloaded = load(saved)
    assert reloaded["meta"] == config["meta"]
    assert reloaded["trainer"].args == config["trainer"].args
    assert not list(saved.parent.glob(".*tmp"))


def test_argparse_integration(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["-C", "x.toml", "--set", "a.b=1", "--set", "c.d=2"])
    assert args.config == Path("x.toml") and args.overrides == ["a.b=1", "c.d=2"]
