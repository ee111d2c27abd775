"""Every fact has one owner: the duplicated readers, geometry, paths and datasets of earlier versions are gone."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from diarizen_lab.models.fbank_conformer import FbankConformer
from diarizen_lab.models.segmentation import PowersetSegmentationModel
from diarizen_lab.models.wavlm_conformer import WavLMConformer
from diarizen_lab.pruning.student import PruningStudent

REPO = Path(__file__).resolve().parents[1]
TASK_KEYS = ("chunk_size", "sample_rate", "max_speakers_per_chunk", "max_speakers_per_frame")


def source(relative: str) -> str:
    return (REPO / relative).read_text()


@pytest.mark.parametrize("module", ["diarizen_lab.evaluation.average", "diarizen_lab.pruning.selection",
                                    "diarizen_lab.pruning.recipe"])
def test_folded_modules_are_gone(module):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(module)


@pytest.mark.parametrize("model", [PowersetSegmentationModel, WavLMConformer, FbankConformer])
def test_models_take_a_task_instead_of_its_facts(model):
    parameters = inspect.signature(model).parameters
    assert "task" in parameters and not set(TASK_KEYS) & set(parameters)


def test_the_student_has_no_frame_geometry_of_its_own():
    assert not any(hasattr(PruningStudent, name) for name in ("receptive_field", "num_frames", "weight_parameters"))


def test_epoch_directories_are_named_in_one_place():
    spelled = [path for path in (REPO / "diarizen_lab").rglob("*.py") if 'f"epoch_{' in path.read_text()]
    assert spelled == [REPO / "diarizen_lab" / "training" / "run_dir.py"]


def test_wavlm_comes_from_one_place_and_assets_from_the_config():
    lazy_store = re.compile(r"from diarizen_lab\.store import resolve_asset")
    for folder in ("models", "pruning"):
        for path in (REPO / "diarizen_lab" / folder).rglob("*.py"):
            assert not lazy_store.search(path.read_text()), path
    assert not lazy_store.search(source("diarizen_lab/cli/prune.py"))
    callers = [path.relative_to(REPO).as_posix() for path in (REPO / "diarizen_lab").rglob("*.py")
               if re.search(r"\bload_wavlm\(", path.read_text()) and "models/wavlm/" not in path.as_posix()
               and "store/" not in path.as_posix()]
    assert callers == ["diarizen_lab/models/wavlm_source.py"]
    assert "SAMPLE_RATE" not in source("diarizen_lab/pruning/complexity.py")


def test_recipes_call_the_library_not_the_cli():
    for path in (REPO / "recipes").rglob("*.py"):
        text = path.read_text()
        assert "os.chdir" not in text and "main([" not in text, path
        assert not re.search(r"\b(run_cli|run_logged|subprocess|sys\.executable)\b", text), path


def test_the_trainer_benchmark_uses_the_shared_random_chunks():
    text = source("benchmarks/bench_trainer.py")
    assert "from diarizen_lab.data.random_chunks import RandomChunks" in text
    assert "(Dataset)" not in text and "source =" not in text
