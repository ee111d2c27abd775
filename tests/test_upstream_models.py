"""Released DiariZen models (upstream's own files, ../shared/upstream-fixtures): load_model on folders and hub
assets, checkpoints import / list / verify, wavlm_src resolution, and the pipeline settings of config.toml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diarizen_lab.cli import main
from diarizen_lab.errors import InputError
from diarizen_lab.evaluation.pipeline import DiarizationConfig
from diarizen_lab.models import load_model
from diarizen_lab.models import io as model_io
from diarizen_lab.models.segmentation import PowersetSegmentationModel
from diarizen_lab.models.upstream import diarization_overrides_from_upstream, read_released_model

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "upstream-fixtures"
FOLDERS = ["base_tiny", "base_tiny_pruned", "large_tiny_pruned"]
HUB_REPO = "BUT-FIT/diarizen-tiny-base-pruned"
HUB_TREE = "models--BUT-FIT--diarizen-tiny-base-pruned"
#: how the text of a snapshot symlink reads (``../../blobs/<id>``) when a copy turned the link into a file
LINK_TEXT = re.compile(r"(\.\./)+blobs/[0-9a-f]{40,64}")

pytestmark = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"needs upstream DiariZen's reference fixtures in {FIXTURES}"
)


def assert_upstream_outputs(model: torch.nn.Module, folder: str) -> None:
    """``model`` returns upstream's log-probabilities (within 1e-4) on both reference inputs."""
    reference = np.load(FIXTURES / folder / "reference.npz")
    for tag in ("8s", "odd"):
        waveforms = torch.from_numpy(reference[f"input_{tag}"])[:, None, :]
        with torch.inference_mode():
            log_probs = model(waveforms).numpy()
        expected = reference[f"log_probs_{tag}"]
        np.testing.assert_allclose(log_probs, expected, rtol=0, atol=1e-4, err_msg=f"{folder} {tag}")
        assert model.num_frames(waveforms.shape[-1]) == int(reference[f"num_frames_{tag}"])


def copy_hub_tree(destination: Path) -> Path:
    """The fixtures' hub tree, as huggingface_hub lays it out: snapshot files are symlinks into blobs/ (a copy
    that stored the links as text files gets them back)."""
    tree = destination / HUB_TREE
    shutil.copytree(FIXTURES / "hub" / HUB_TREE, tree, symlinks=True)
    for path in sorted((tree / "snapshots").rglob("*")):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 200:
            text = path.read_text(errors="replace").strip()
            if LINK_TEXT.fullmatch(text):
                path.unlink()
                path.symlink_to(text)
    for path in tree.rglob("*"):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)  # the fixtures are read-only; the copies need not be
    return destination


@pytest.fixture(scope="module")
def hub_store(tmp_path_factory) -> Path:
    """A store holding the hub tree, and the tiny WavLM preset it names (not one of upstream's four) registered
    as a store asset: the upstream {"state_dict", "config"} file."""
    store = copy_hub_tree(tmp_path_factory.mktemp("store"))
    shutil.copy(FIXTURES / "base_tiny_pruned" / "wavlm_only.bin", store / "wavlm_tiny_base_pruned.pt")
    return store


@pytest.mark.parametrize("folder", FOLDERS)
def test_released_folder_computes_what_upstream_computes(folder):
    model = load_model(FIXTURES / folder)
    assert isinstance(model, PowersetSegmentationModel) and not model.training
    assert_upstream_outputs(model, folder)
    # frames last and step as upstream's; upstream centres frame 0 at sample 79, ours at the middle of its
    # 400 samples (docs/migrating-from-diarizen.md: a 7.5 ms difference in where frames are placed)
    _, duration, step = np.load(FIXTURES / folder / "reference.npz")["receptive_field_start_duration_step"]
    assert (model.receptive_field.duration, model.receptive_field.step) == pytest.approx((duration, step), abs=1e-9)


def test_hub_asset_loads_by_name_from_the_store(hub_store):
    model = load_model(HUB_REPO, checkpoint_dir=hub_store)
    assert_upstream_outputs(model, "base_tiny_pruned")
    tree = hub_store / HUB_TREE  # the tree's root as a path
    assert_upstream_outputs(load_model(tree, checkpoint_dir=hub_store), "base_tiny_pruned")
    with pytest.raises(InputError, match=r"wavlm_src = 'wavlm_tiny_base_pruned' is neither an upstream preset .* nor "
                       r"an asset of the store .* as wavlm_tiny_base_pruned.pt \(or a manifest entry"):
        load_model(tree, checkpoint_dir=hub_store / "empty")


@pytest.mark.parametrize("folder", FOLDERS)
def test_checkpoints_import_writes_our_model_file_with_identical_outputs(tmp_path, folder):
    target = tmp_path / "model.pt"
    assert main(["checkpoints", "import", str(FIXTURES / folder), str(target)]) == 0
    assert_upstream_outputs(model_io.load_model_file(target), folder)  # our own format, no upstream code path
    assert main(["checkpoints", "import", str(FIXTURES / folder), str(target)]) == 2  # no silent overwrite


def test_checkpoints_import_of_a_hub_asset(tmp_path, hub_store):
    target = tmp_path / "model.pt"
    assert main(["checkpoints", "import", HUB_REPO, str(target), "--checkpoint-dir", str(hub_store)]) == 0
    assert_upstream_outputs(model_io.load_model_file(target), "base_tiny_pruned")
    imported_from = model_io.load_checkpoint(target)["meta"]["imported_from"]
    assert imported_from.endswith("snapshots/5d1e0c0a7f3b2e9d8c6a4b2f1e0d9c8b7a6f5e4d")


def test_checkpoints_list_names_the_kind_and_verify_checks_the_blobs(tmp_path, hub_store, capsys):
    assert main(["checkpoints", "list", "--checkpoint-dir", str(hub_store)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(HUB_REPO))
    assert row.split()[1] == "diarizen-released" and row.split()[-2] == "hf-cache"
    assert main(["checkpoints", "verify", str(hub_store), "--hash"]) == 0
    assert "5 file(s) checked: 5 ok, 0 problem(s)" in capsys.readouterr().out  # 4 in the tree, the WavLM file

    damaged = copy_hub_tree(tmp_path)
    blob = damaged / HUB_TREE / "blobs" / "216cd2f6a87d1be467eec31f4cdc266e9163d1addcb133e20eb60e5515b870c4"
    data = bytearray(blob.read_bytes())
    data[-100] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert main(["checkpoints", "verify", str(damaged), "--hash"]) == 1
    assert re.search(r"hash-mismatch\s+snapshots/\w+/pytorch_model.bin", capsys.readouterr().out)


def released_copy(tmp_path: Path, folder: str, *, wavlm_src: str | None = None, extra: str = "",
                  keep_wavlm_config: bool = True) -> Path:
    copy = tmp_path / folder
    shutil.copytree(FIXTURES / folder, copy)
    config = (copy / "config.toml").read_text()
    if wavlm_src is not None:
        config = re.sub(r'wavlm_src = ".*"', f'wavlm_src = "{wavlm_src}"', config)
    (copy / "config.toml").write_text(config + extra)
    if not keep_wavlm_config:
        (copy / "wavlm_config.json").unlink()
    return copy


def test_wavlm_src_resolves_to_a_file_or_a_registered_name_and_unknown_tables_are_ignored(tmp_path):
    # a {"state_dict", "config"} file, relative to the folder: only its config is used
    folder = released_copy(tmp_path / "file", "large_tiny_pruned", wavlm_src="wavlm_only.bin", keep_wavlm_config=False)
    assert_upstream_outputs(load_model(folder), "large_tiny_pruned")
    # a training recipe in the released config.toml is ignored, as upstream's pipeline ignores it
    recipe = '\n[trainer]\npath = "trainer_dual_opt.Trainer"\n[trainer.args]\nmax_epochs = 100\n[optimizer_small]\n'
    folder = released_copy(tmp_path / "recipe", "base_tiny", extra=recipe)
    assert_upstream_outputs(load_model(folder), "base_tiny")

    folder = released_copy(tmp_path / "unregistered", "base_tiny", keep_wavlm_config=False)
    with pytest.raises(InputError, match=r"wavlm_src = 'wavlm_tiny_base' is neither an upstream preset \(wavlm_base, "
                       r".*wavlm_config.json") as error:
        load_model(folder)
    assert str(folder / "config.toml") in str(error.value)
    # an upstream preset of another size: config.toml and the WavLM disagree, and the error says how
    folder = released_copy(tmp_path / "preset", "base_tiny", wavlm_src="wavlm_base", keep_wavlm_config=False)
    with pytest.raises(InputError, match=r"wavlm_layer_num = 4 \(the WavLM gives 13\), wavlm_feat_dim = 64 \(the "):
        load_model(folder)


def test_bad_released_configs_are_one_line_errors(tmp_path):
    folder = released_copy(tmp_path, "base_tiny")
    config = folder / "config.toml"
    config.write_text(config.read_text().replace("use_posi = false", "use_posi = true"))
    with pytest.raises(InputError, match=r"config.toml: \[model.args\] has no equivalent here: use_posi = True \(no "):
        load_model(folder)
    config.write_text('[model]\npath = "diarizen.models.eend.model_fbank_conformer.Model"\n[model.args]\n')
    with pytest.raises(InputError, match="only upstream's WavLM-Conformer models are released in this format"):
        load_model(folder)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(InputError, match="no model.pt in this directory"):
        load_model(folder)
    with pytest.raises(InputError, match="nor a store asset of that name"):
        load_model(tmp_path / "absent", checkpoint_dir=tmp_path)


def test_pipeline_settings_of_a_released_config():
    released = read_released_model(FIXTURES / "base_tiny_pruned")
    expected = {
        "channel": 0, "window": 8.0, "step_ratio": 0.1, "segmentation_batch_size": 32, "embedding_batch_size": 32,
        "median_filter": 11, "clustering": "vbx", "min_speakers": 1, "max_speakers": 20, "ahc_threshold": 0.6,
        "vbx_fa": 0.07, "vbx_fb": 0.8, "vbx_ahc_criterion": "distance", "vbx_lda_dim": 128, "vbx_max_iters": 20,
    }
    fields = set(DiarizationConfig.__dataclass_fields__)
    overrides = diarization_overrides_from_upstream(released.inference_args, released.clustering_args)
    assert set(expected) <= fields and overrides == expected  # every upstream knob has a setting here
    DiarizationConfig(**overrides)  # every value is valid
    ahc = {"method": "AgglomerativeClustering", "ahc_threshold": 0.7, "min_cluster_size": 13, "Fa": 0.07}
    assert diarization_overrides_from_upstream({"apply_median_filtering": False}, ahc) == {
        "channel": 0, "median_filter": 0, "clustering": "ahc", "ahc_method": "centroid", "ahc_threshold": 0.7,
        "min_cluster_size": 13,
    }
    with pytest.raises(InputError, match="method must be one of VBxClustering, AgglomerativeClustering"):
        diarization_overrides_from_upstream({}, {"method": "KMeans"})


def write_random_wespeaker(folder: Path) -> Path:
    """A random-weight WeSpeaker ResNet34 in pyannote's format (no trained embedding can be downloaded here)."""
    import lightning
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    torch.manual_seed(0)
    wespeaker = WeSpeakerResNet34()
    wespeaker.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    checkpoint = {"state_dict": wespeaker.state_dict(), "hyper_parameters": dict(wespeaker.hparams)}
    wespeaker.on_save_checkpoint(checkpoint)
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    folder.mkdir(parents=True)
    torch.save(checkpoint, folder / "pytorch_model.bin")
    (folder / "config.yaml").write_text("model: pyannote.audio.models.embedding.WeSpeakerResNet34\n")
    return folder


def test_diarize_a_hub_asset_runs_vbx_with_its_plda_and_inference_settings(tmp_path, hub_store):
    import pyannote.audio

    from diarizen_lab.data.rttm import read_rttm

    store = copy_hub_tree(tmp_path / "store")
    shutil.copy(FIXTURES / "base_tiny_pruned" / "wavlm_config.json", store / "tiny.json")  # the name, by manifest
    (store / "manifest.toml").write_text('[assets.wavlm_tiny_base_pruned]\npath = "tiny.json"\n')
    write_random_wespeaker(store / "wespeaker-resnet34-lm")  # the default embedding asset, 256-dimensional
    import soundfile

    audio, sample_rate = soundfile.read(Path(pyannote.audio.__file__).parent / "sample" / "sample.wav")
    sample = tmp_path / "sample.wav"
    soundfile.write(sample, audio[: 15 * sample_rate], sample_rate)  # its first 15 s: a quicker test
    out = tmp_path / "rttm"
    result = subprocess.run(
        [sys.executable, "-m", "diarizen_lab", "diarize", "-c", HUB_REPO, "--checkpoint-dir", str(store),
         "-i", str(sample), "-o", str(out), "--set", "diarization.max_speakers=3"],
        capture_output=True, text=True, env=os.environ, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    used = next(line for line in result.stdout.splitlines() if line.startswith("released model settings: "))
    snapshot = store / HUB_TREE / "snapshots" / "5d1e0c0a7f3b2e9d8c6a4b2f1e0d9c8b7a6f5e4d"
    for setting in ("window=8.0", "step_ratio=0.1", "median_filter=11", "clustering=vbx", "ahc_threshold=0.6",
                    "vbx_fa=0.07", "vbx_fb=0.8", "min_speakers=1", f"plda={snapshot / 'plda'}"):
        assert setting in used.split(": ", 1)[1].split(", "), setting
    assert "max_speakers" not in used  # the user's --set wins over config.toml
    turns = read_rttm(out / "sample.rttm")
    assert turns and max(turn.end for turn in turns) <= 15.0 + 1e-3
    assert 1 <= len({turn.speaker for turn in turns}) <= 3


def test_a_released_model_is_a_pruning_teacher(tmp_path):
    from diarizen_lab.models.wavlm.formats import load_wavlm
    from diarizen_lab.pruning.extract import extract_wavlm

    teacher = extract_wavlm(FIXTURES / "large_tiny_pruned")
    assert teacher.config == load_model(FIXTURES / "large_tiny_pruned").wavlm.config
    assert main(["prune", "extract", "-c", str(FIXTURES / "base_tiny"), "-o", str(tmp_path / "teacher.pt")]) == 0
    reference = np.load(FIXTURES / "base_tiny" / "reference.npz")
    with torch.inference_mode():
        hidden = load_wavlm(tmp_path / "teacher.pt").eval()(torch.from_numpy(reference["input_odd"]))
    np.testing.assert_allclose(torch.stack(list(hidden)).numpy(), reference["wavlm_hidden_odd"], rtol=0, atol=1e-4)
