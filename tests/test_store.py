"""Offline checkpoint store: resolution by name and path, per-file checks, store verification, safe repairs."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from diarizen_lab.errors import InputError
from diarizen_lab.store import (
    AssetNotFoundError,
    BrokenAssetError,
    CheckpointStore,
    Status,
    check_file,
    default_checkpoint_dir,
    load_manifest,
    repair_tree,
    resolve_asset,
    verify_store,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """No real hub cache or store leaks into a test: HF_HUB_CACHE is an empty folder of the test's own."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub-cache"))
    monkeypatch.delenv("DIARIZEN_LAB_CHECKPOINTS", raising=False)


# ---------------------------------------------------------------------------------------------------------
# Tiny fake assets


def torch_file(path: Path, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": torch.arange(64.0), **extra}, path)
    return path


def safetensors_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": torch.arange(64.0)}, str(path))
    return path


def hf_model_dir(path: Path, weights: str = "model.safetensors") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "wavlm", "hidden_size": 8}))
    if weights.endswith(".safetensors"):
        safetensors_file(path / weights)
    else:
        torch_file(path / weights)
    return path


def pyannote_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("model:\n  _target_: pyannote.audio.models.embedding.WeSpeakerResNet34\n")
    torch_file(path / "pytorch_model.bin")
    return path


def plda_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    np.savez(path / "xvec_transform.npz", mean1=np.zeros(4), mean2=np.zeros(2), lda=np.eye(4, 2))
    np.savez(path / "plda.npz", mu=np.zeros(2), tr=np.eye(2), psi=np.ones(2))
    return path


def make_cache_tree(folder: Path, repo_id: str, source: Path, commit: str = COMMIT) -> Path:
    """A Hugging Face cache tree of ``repo_id`` holding the files of ``source``, symlinked into blobs/ as the hub
    does (sha256 names); returns the snapshot folder."""
    repo = folder / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        content = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def tree_contents(root: Path) -> set[bytes]:
    """Every distinct file content under ``root`` (symlinks followed, broken ones skipped)."""
    return {p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def store_root(tmp_path) -> Path:
    root = tmp_path / "checkpoints"
    root.mkdir()
    return root


@pytest.fixture
def wavlm_cache(store_root, tmp_path) -> Path:
    """wavlm-base-plus as a cache tree with real symlinks: returns the snapshot folder."""
    source = hf_model_dir(tmp_path / "src-wavlm", "pytorch_model.bin")
    return make_cache_tree(store_root, "microsoft/wavlm-base-plus", source)


# ---------------------------------------------------------------------------------------------------------
# Resolution


def test_plain_file_resolves_by_convention_name_and_by_path(store_root):
    path = torch_file(store_root / "wavlm-large.pt")
    store = CheckpointStore(store_root)
    asset = store.find("wavlm-large")
    assert (asset.path, asset.kind, asset.source) == (path, "wavlm", "folder")
    assert resolve_asset("wavlm-large", checkpoint_dir=store_root) == path
    assert resolve_asset(path) == path  # an existing path is returned as is
    assert store.find(str(path)).source == "path"


def test_manifest_entry_resolves_with_kind_and_checked_sha(store_root):
    path = torch_file(store_root / "wavlm" / "WavLM-Base+.pt")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (store_root / "manifest.toml").write_text(
        f'[assets.wavlm-base-plus]\npath = "wavlm/WavLM-Base+.pt"\nkind = "wavlm"\nsha256 = "{digest.upper()}"\n'
    )
    asset = CheckpointStore(store_root).find("wavlm-base-plus")
    assert (asset.path, asset.kind, asset.source, asset.sha256) == (path, "wavlm", "manifest", digest)
    [section] = verify_store(store_root)
    assert [check.status for check in section.checks] == [Status.OK]


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_hf_model_folder(store_root, weights):
    folder = hf_model_dir(store_root / "my-wavlm", weights)
    asset = CheckpointStore(store_root).find("my-wavlm")
    assert (asset.path, asset.kind) == (folder, "hf-model")
    [section] = verify_store(store_root)
    assert [(c.path.name, c.status) for c in section.checks] == [("config.json", Status.OK), (weights, Status.OK)]


def test_hf_model_folder_without_weights_is_incomplete(store_root):
    folder = store_root / "my-wavlm"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(BrokenAssetError, match=r"lacks model.safetensors or pytorch_model.bin"):
        CheckpointStore(store_root).find("my-wavlm")


def test_pyannote_and_plda_folders(store_root):
    embedding = pyannote_dir(store_root / "wespeaker-resnet34-lm")
    plda = plda_dir(store_root / "plda")
    store = CheckpointStore(store_root)
    asset = store.find("wespeaker-resnet34-lm")
    assert (asset.path, asset.kind) == (embedding, "embedding")
    assert (store.find("plda").path, store.find("plda").kind) == (plda, "plda")
    (plda / "plda.npz").unlink()
    with pytest.raises(BrokenAssetError, match=r"lacks plda.npz"):
        store.find("plda")
    plda_section = next(section for section in verify_store(store_root) if section.title.startswith("asset plda"))
    assert [(c.path, c.status, c.detail) for c in plda_section.problems] == [
        (plda, Status.MISSING, "lacks plda.npz, which a plda folder needs")
    ]


def test_cache_tree_resolves_to_refs_main_snapshot_through_symlinks(store_root, wavlm_cache):
    assert (wavlm_cache / "pytorch_model.bin").is_symlink()
    asset = CheckpointStore(store_root).find("wavlm-base-plus")
    assert (asset.path, asset.kind, asset.source) == (wavlm_cache, "wavlm", "hf-cache")
    blobs = store_root / "models--microsoft--wavlm-base-plus" / "blobs"
    assert asset.size() == sum(blob.stat().st_size for blob in blobs.iterdir())
    # a repository id, and the cache root given as a path, resolve to the same snapshot
    assert resolve_asset("microsoft/wavlm-base-plus", store_root) == wavlm_cache
    assert resolve_asset(wavlm_cache.parent.parent) == wavlm_cache


def test_plda_from_community_pipeline_cache_subfolder(store_root, tmp_path):
    source = tmp_path / "community"
    plda_dir(source / "plda")
    pyannote_dir(source / "embedding")
    (source / "config.yaml").write_text("pipeline:\n  name: x\n")
    snapshot = make_cache_tree(store_root / "hub", "pyannote/speaker-diarization-community-1", source)
    store = CheckpointStore(store_root)
    assert store.resolve("plda") == snapshot / "plda"
    assert store.resolve("pyannote/speaker-diarization-community-1/embedding") == snapshot / "embedding"


def test_user_hub_cache_is_searched_last(tmp_path, store_root):
    snapshot = make_cache_tree(tmp_path / "hf-hub-cache", "microsoft/wavlm-large", hf_model_dir(tmp_path / "src"))
    assert resolve_asset("wavlm-large", store_root) == snapshot
    with pytest.raises(AssetNotFoundError):
        CheckpointStore(store_root, search_hf_cache=False).resolve("wavlm-large")


def test_copied_cache_with_plain_files_resolves_and_verifies(store_root, tmp_path):
    make_cache_tree(tmp_path / "machine-a", "microsoft/wavlm-base-plus", hf_model_dir(tmp_path / "src"))
    shutil.copytree(tmp_path / "machine-a", store_root, symlinks=False, dirs_exist_ok=True)  # like scp -r
    snapshot = store_root / "models--microsoft--wavlm-base-plus" / "snapshots" / COMMIT
    assert not (snapshot / "model.safetensors").is_symlink()
    assert resolve_asset("wavlm-base-plus", store_root) == snapshot
    checks = [check for section in verify_store(store_root) for check in section.checks]
    assert {check.status for check in checks} == {Status.OK}
    assert all("plain copy" in check.detail for check in checks)


def test_manifest_points_at_cache_tree_with_revision_and_subfolder(store_root, tmp_path):
    plda_dir(tmp_path / "old" / "plda")
    plda_dir(tmp_path / "new" / "plda")
    repo_id = "pyannote/speaker-diarization-community-1"
    old = make_cache_tree(store_root / "hub", repo_id, tmp_path / "old", commit="a" * 40)
    new = make_cache_tree(store_root / "new-hub", repo_id, tmp_path / "new", commit="b" * 40)
    repo = old.parent.parent
    shutil.copytree(new, repo / "snapshots" / ("b" * 40), symlinks=True)
    (store_root / "manifest.toml").write_text(
        f'[assets.plda]\npath = "hub/{repo.name}"\nrevision = "{"a" * 40}"\nsubfolder = "plda"\nkind = "plda"\n'
    )
    assert CheckpointStore(store_root).resolve("plda") == old / "plda"


def test_ref_missing_single_snapshot_is_used_several_are_ambiguous(store_root, wavlm_cache):
    repo = wavlm_cache.parent.parent
    (repo / "refs" / "main").unlink()
    assert CheckpointStore(store_root).resolve("wavlm-base-plus") == wavlm_cache
    (repo / "snapshots" / ("f" * 40)).mkdir()
    with pytest.raises(AssetNotFoundError, match=r"no refs/main and 2 snapshot\(s\).*revision"):
        CheckpointStore(store_root).resolve("wavlm-base-plus")


def test_not_found_names_asset_every_path_searched_and_fix(store_root, tmp_path):
    with pytest.raises(AssetNotFoundError) as caught:
        resolve_asset("wavlm-large", store_root)
    error = caught.value
    assert error.name == "wavlm-large"
    assert error.searched == [
        str(store_root / "wavlm-large"),
        str(store_root / "wavlm-large.pt"),
        str(store_root / "wavlm-large.safetensors"),
        str(store_root / "models--microsoft--wavlm-large"),
        str(store_root / "hub" / "models--microsoft--wavlm-large"),
        str(tmp_path / "hf-hub-cache" / "models--microsoft--wavlm-large"),
    ]
    message = str(error)
    assert message.startswith("asset 'wavlm-large' not found; searched: ")
    assert "hf download microsoft/wavlm-large" in message and "manifest.toml" in message
    assert "\n" not in message


def test_default_checkpoint_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert default_checkpoint_dir() == tmp_path / "checkpoints"
    monkeypatch.setenv("DIARIZEN_LAB_CHECKPOINTS", str(tmp_path / "elsewhere"))
    torch_file(tmp_path / "elsewhere" / "plda-free.pt")
    assert resolve_asset("plda-free") == tmp_path / "elsewhere" / "plda-free.pt"


def test_names_and_list_cover_manifest_known_and_folder_contents(store_root, wavlm_cache, tmp_path):
    torch_file(store_root / "wavlm" / "WavLM-Large.pt")
    torch_file(store_root / "extra.pt")
    make_cache_tree(store_root / "hub", "acme/tiny", hf_model_dir(tmp_path / "tiny"))
    (store_root / "manifest.toml").write_text('[assets.wavlm-large]\npath = "wavlm/WavLM-Large.pt"\n')
    store = CheckpointStore(store_root)
    assert store.names() == [
        "wavlm-large", "wavlm-base", "wavlm-base-plus", "wespeaker-resnet34-lm", "plda", "extra", "acme/tiny"
    ]
    listed = {asset.name: (asset.kind, asset.source) for asset in store.list()}
    assert listed == {
        "wavlm-large": ("wavlm", "manifest"),
        "wavlm-base-plus": ("wavlm", "hf-cache"),
        "extra": ("torch", "folder"),
        "acme/tiny": ("hf-model", "hf-cache"),
    }


# ---------------------------------------------------------------------------------------------------------
# Manifest errors


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[assets.a]\npath = "a.pt"\n\n[assets.b]\npath = \n', 5, "TOML syntax error: Invalid value"),
        (
            '[assets.a]\npath = "a.pt"\n\n[assets.b]\npath = "b.pt"\nsha = "00"\n', 6,
            "unknown key 'sha' (did you mean 'sha256'?)",
        ),
        ('[assets.a]\npath = "a.pt"\nsha256 = "abc"\n', 3, "sha256 must be 64 hex digits"),
        ('[assets.a]\nkind = "wavlm"\n', 1, "missing 'path'"),
        ('version = 2\n[assets.a]\npath = "a.pt"\n', 1, "unknown top-level key 'version'"),
    ],
)
def test_manifest_errors_name_file_and_line(store_root, text, line, message):
    manifest = store_root / "manifest.toml"
    manifest.write_text(text)
    with pytest.raises(InputError) as caught:
        load_manifest(manifest)
    assert (caught.value.path, caught.value.line) == (str(manifest), line)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{manifest}:{line}: ")


def test_manifest_entry_with_missing_path_is_not_found_with_its_line(store_root):
    (store_root / "manifest.toml").write_text('# assets\n\n[assets.wavlm-large]\npath = "gone/WavLM-Large.pt"\n')
    with pytest.raises(AssetNotFoundError, match=r"manifest.toml:3") as caught:
        resolve_asset("wavlm-large", store_root)
    assert caught.value.searched[0].startswith(str(store_root / "gone" / "WavLM-Large.pt"))
    [section] = verify_store(store_root)
    assert [check.status for check in section.checks] == [Status.MISSING]


# ---------------------------------------------------------------------------------------------------------
# Per-file checks: each corrupt variant has its own status and fix


def test_broken_symlink_to_absent_blob(store_root, wavlm_cache):
    blob = (wavlm_cache / "pytorch_model.bin").resolve()
    blob.unlink()
    check = check_file(wavlm_cache / "pytorch_model.bin")
    assert check.status is Status.BROKEN_SYMLINK
    assert f"re-copy blob {blob.name}" in check.fix and "scp -r" in check.fix
    with pytest.raises(BrokenAssetError, match=r"is unusable: .*pytorch_model.bin is broken-symlink"):
        resolve_asset("wavlm-base-plus", store_root)


def test_broken_symlink_with_incomplete_download_points_to_repair(wavlm_cache):
    blob = (wavlm_cache / "pytorch_model.bin").resolve()
    blob.rename(blob.with_name(blob.name + ".incomplete"))
    check = check_file(wavlm_cache / "pytorch_model.bin")
    assert check.status is Status.BROKEN_SYMLINK
    assert ".incomplete is an unfinished download" in check.fix and "checkpoints repair" in check.fix


def test_zero_byte_file(store_root):
    path = torch_file(store_root / "wavlm-large.pt")
    path.write_bytes(b"")
    check = check_file(path)
    assert (check.status, check.detail) == (Status.EMPTY, "0 bytes")
    with pytest.raises(BrokenAssetError, match="zero-byte"):
        resolve_asset("wavlm-large", store_root)


def test_missing_file():
    check = check_file(Path("/nonexistent/model.pt"))
    assert check.status is Status.MISSING


@pytest.mark.parametrize(
    ("make", "name", "reason"),
    [
        (torch_file, "model.pt", "failed finding central directory"),
        (safetensors_file, "model.safetensors", "incomplete metadata"),
        (lambda p: plda_dir(p.parent / "plda") / "plda.npz", "plda.npz", "not a zip file"),
    ],
)
def test_truncated_file_is_unreadable(tmp_path, make, name, reason):
    path = make(tmp_path / name)
    assert check_file(path).ok
    truncate(path)
    check = check_file(path)
    assert check.status is Status.UNREADABLE
    assert reason in check.detail.lower()
    assert "truncated or corrupt" in check.fix


def test_legacy_torch_file_is_read_in_full(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"weight": torch.arange(64.0)}, path, _use_new_zipfile_serialization=False)
    assert check_file(path).ok
    truncate(path, 0.8)
    assert check_file(path).status is Status.UNREADABLE


def test_torch_file_with_the_python_objects_of_known_checkpoints_is_readable(tmp_path):
    # fairseq (WavLM) checkpoints pickle an argparse.Namespace: one of the few classes read besides tensors
    path = torch_file(tmp_path / "pytorch_model.bin", hyper_parameters=argparse.Namespace(sample_rate=16000))
    assert check_file(path).ok


@pytest.mark.parametrize(("name", "text"), [("config.json", '{"a": 1,'), ("config.yaml", "a: [1, 2\n")])
def test_unparsable_config_is_unreadable(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert check_file(path).status is Status.UNREADABLE


def test_plda_file_without_its_arrays(tmp_path):
    np.savez(tmp_path / "plda.npz", mu=np.zeros(2))
    check = check_file(tmp_path / "plda.npz")
    assert (check.status, check.detail) == (Status.UNREADABLE, "lacks array(s) tr, psi that pyannote's PLDA needs")


def test_sha256_mismatch_from_manifest(store_root):
    torch_file(store_root / "wavlm-large.pt")
    manifest = f'[assets.wavlm-large]\npath = "wavlm-large.pt"\nsha256 = "{"0" * 64}"\n'
    (store_root / "manifest.toml").write_text(manifest)
    [section] = verify_store(store_root)
    [check] = section.checks
    assert check.status is Status.HASH_MISMATCH
    assert f"expected {'0' * 64}" in check.detail and "update sha256 in the manifest" in check.fix


def test_folder_asset_with_per_file_sha256(store_root):
    folder = plda_dir(store_root / "plda")
    good = hashlib.sha256((folder / "plda.npz").read_bytes()).hexdigest()
    (store_root / "manifest.toml").write_text(
        f'[assets.plda]\npath = "plda"\n'
        f'sha256 = {{ "plda.npz" = "{good}", "xvec_transform.npz" = "{"1" * 64}" }}\n'
    )
    [section] = verify_store(store_root)
    assert [(c.path.name, c.status) for c in section.checks] == [
        ("plda.npz", Status.OK), ("xvec_transform.npz", Status.HASH_MISMATCH)
    ]


def test_blob_hash_is_checked_against_its_name_by_default_when_small(store_root, wavlm_cache, monkeypatch):
    blob = (wavlm_cache / "config.json").resolve()
    blob.write_text(json.dumps({"model_type": "wavlm", "hidden_size": 9}))  # same size, other content
    check = check_file(wavlm_cache / "config.json")
    assert check.status is Status.HASH_MISMATCH and "the blob is corrupt" in check.fix
    assert check_file(wavlm_cache / "config.json", verify_blob=False).ok
    monkeypatch.setattr("diarizen_lab.store.checks.HASH_LIMIT_BYTES", blob.stat().st_size - 1)  # a "large" blob
    assert check_file(wavlm_cache / "config.json").ok
    assert check_file(wavlm_cache / "config.json", verify_blob=True).status is Status.HASH_MISMATCH


def test_verify_store_reports_refs_to_missing_snapshots_and_every_cache_file(store_root, wavlm_cache, tmp_path):
    make_cache_tree(store_root / "hub", "acme/other", hf_model_dir(tmp_path / "other"))
    (wavlm_cache.parent.parent / "refs" / "pr").mkdir()
    (wavlm_cache.parent.parent / "refs" / "pr" / "1").write_text("e" * 40)
    sections = verify_store(store_root)
    titles = [section.title.split(":")[0] for section in sections]
    # the snapshot of a named asset is checked once, under its name; a cache tree's other files under the tree
    assert titles == ["asset wavlm-base-plus (wavlm)", "cache acme/other", "cache microsoft/wavlm-base-plus"]
    assert [(check.format(sections[1].base), check.ok) for check in sections[1].checks] == [
        (f"ok              snapshots/{COMMIT}/config.json", True),
        (f"ok              snapshots/{COMMIT}/model.safetensors", True),
    ]
    [ref_check] = sections[-1].checks
    assert ref_check.status is Status.MISSING and "names snapshot eeee" in ref_check.detail


# ---------------------------------------------------------------------------------------------------------
# Repair


def copied_cache(store_root: Path, tmp_path: Path) -> Path:
    """wavlm-base-plus copied with scp -r semantics (symlinks dereferenced); returns the snapshot."""
    make_cache_tree(tmp_path / "machine-a", "microsoft/wavlm-base-plus", hf_model_dir(tmp_path / "src"))
    shutil.copytree(tmp_path / "machine-a", store_root, symlinks=False, dirs_exist_ok=True)
    return store_root / "models--microsoft--wavlm-base-plus" / "snapshots" / COMMIT


def test_repair_relinks_a_dereferenced_copy_without_losing_data(store_root, tmp_path):
    snapshot = copied_cache(store_root, tmp_path)
    before = tree_contents(store_root)
    assert repair_tree(store_root, dry_run=True) and tree_contents(store_root) == before
    assert not (snapshot / "config.json").is_symlink()

    actions = repair_tree(store_root)
    assert [(a.path.name, a.action) for a in actions] == [
        ("config.json", "relinked"), ("model.safetensors", "relinked")
    ]
    for name in ("config.json", "model.safetensors"):
        link = snapshot / name
        digest = hashlib.sha256(link.read_bytes()).hexdigest()
        assert link.is_symlink() and os.readlink(link) == f"../../blobs/{digest}"
    assert tree_contents(store_root) == before
    assert all(check.ok and not check.detail for s in verify_store(store_root) for check in s.checks)
    assert repair_tree(store_root) == []  # idempotent


def test_repair_restores_a_missing_blob_from_a_plain_copy_of_another_snapshot(store_root, wavlm_cache):
    repo = wavlm_cache.parent.parent
    plain = repo / "snapshots" / ("c" * 40)
    shutil.copytree(wavlm_cache, plain, symlinks=False)
    blob = (wavlm_cache / "pytorch_model.bin").resolve()
    blob.unlink()
    assert check_file(wavlm_cache / "pytorch_model.bin").status is Status.BROKEN_SYMLINK
    repair_tree(store_root)
    assert blob.is_file() and check_file(wavlm_cache / "pytorch_model.bin").ok
    assert (plain / "pytorch_model.bin").resolve() == blob


def test_repair_completes_incomplete_blob_only_when_its_hash_matches(store_root, wavlm_cache):
    good = (wavlm_cache / "pytorch_model.bin").resolve()
    bad = (wavlm_cache / "config.json").resolve()
    good.rename(good.with_name(good.name + ".incomplete"))
    truncate(bad)
    bad.rename(bad.with_name(bad.name + ".incomplete"))
    actions = {(a.path.name, a.action) for a in repair_tree(store_root)}
    assert actions == {
        (good.name, "completed"),
        (bad.name + ".incomplete", "kept"),
        ("config.json", "unrepaired"),
    }
    assert good.is_file() and bad.with_name(bad.name + ".incomplete").is_file()  # nothing deleted


def test_repair_reports_unrepairable_broken_symlink_with_fix(store_root, wavlm_cache):
    blob = (wavlm_cache / "config.json").resolve()
    blob.unlink()
    [action] = repair_tree(store_root)
    assert action.action == "unrepaired" and f"re-copy blob {blob.name}" in action.detail
    assert (wavlm_cache / "config.json").is_symlink()


def test_materialize_replaces_symlinks_by_hard_links(store_root, wavlm_cache):
    before = tree_contents(store_root)
    actions = repair_tree(store_root, materialize=True)
    assert {a.action for a in actions} == {"materialized"} and len(actions) == 2
    for name in ("config.json", "pytorch_model.bin"):
        file = wavlm_cache / name
        assert not file.is_symlink() and file.stat().st_nlink == 2
    assert tree_contents(store_root) == before
    assert all(check.ok and not check.detail for s in verify_store(store_root) for check in s.checks)
    assert repair_tree(store_root) == []  # hard links to their blobs are left alone


# ---------------------------------------------------------------------------------------------------------
# Assets a config refers to


