"""``diarizen-lab checkpoints``: list, verify (exit codes, one line per file), repair, convert."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diarizen_lab.cli import main
from test_store import COMMIT, hf_model_dir, make_cache_tree, plda_dir, torch_file, tree_contents, truncate


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub-cache"))
    monkeypatch.delenv("DIARIZEN_LAB_CHECKPOINTS", raising=False)


@pytest.fixture
def store(tmp_path) -> Path:
    """A store with a manifest entry (plain file), a cache tree with symlinks, and a PLDA folder."""
    root = tmp_path / "checkpoints"
    torch_file(root / "wavlm" / "WavLM-Large.pt")
    (root / "manifest.toml").write_text('[assets.wavlm-large]\npath = "wavlm/WavLM-Large.pt"\nkind = "wavlm"\n')
    make_cache_tree(root, "microsoft/wavlm-base-plus", hf_model_dir(tmp_path / "src", "pytorch_model.bin"))
    plda_dir(root / "plda")
    return root


def cli(capsys, *args: str) -> tuple[int, list[str], str]:
    code = main(["checkpoints", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_verify_good_store_exits_zero_with_a_line_per_file(store, capsys):
    code, lines, _ = cli(capsys, "verify", store)
    assert code == 0
    assert lines == [
        f"checkpoint store: {store}",
        f"asset wavlm-large (wavlm): {store / 'wavlm' / 'WavLM-Large.pt'}",
        "  ok              wavlm/WavLM-Large.pt",
        f"asset wavlm-base-plus (wavlm): {store / 'models--microsoft--wavlm-base-plus' / 'snapshots' / COMMIT}",
        "  ok              config.json",
        "  ok              pytorch_model.bin",
        f"asset plda (plda): {store / 'plda'}",
        "  ok              plda.npz",
        "  ok              xvec_transform.npz",
        "5 file(s) checked: 5 ok, 0 problem(s)",
    ]


def test_verify_defaults_to_the_configured_store(store, capsys, monkeypatch):
    monkeypatch.setenv("DIARIZEN_LAB_CHECKPOINTS", str(store))
    code, lines, _ = cli(capsys, "verify")
    assert code == 0 and lines[0] == f"checkpoint store: {store}"


def test_verify_reports_each_problem_and_exits_one(store, capsys):
    snapshot = store / "models--microsoft--wavlm-base-plus" / "snapshots" / COMMIT
    blob = (snapshot / "pytorch_model.bin").resolve()
    blob.unlink()
    (store / "plda" / "plda.npz").write_bytes(b"")
    truncate(store / "wavlm" / "WavLM-Large.pt")
    code, lines, _ = cli(capsys, "verify", store)
    assert code == 1
    problems = [line for line in lines if line.startswith("  ") and not line.startswith("  ok")]
    assert [line.split()[:2] for line in problems] == [
        ["unreadable", "wavlm/WavLM-Large.pt:"],
        ["broken-symlink", "pytorch_model.bin:"],
        ["zero-byte", "plda.npz:"],
    ]
    assert f"points to missing blobs/{blob.name} (fix: re-copy blob {blob.name}" in problems[1]
    assert lines[-1] == "5 file(s) checked: 2 ok, 3 problem(s)"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diarizen_lab", "checkpoints", *map(str, args)],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120,
    )


def test_verify_and_list_attempt_no_connection(store, tmp_path):
    log = tmp_path / "network.log"
    for args in (("verify", store), ("list", "--checkpoint-dir", store)):
        result = run_cli(*args, env={"DIARIZEN_LAB_NETWORK_LOG": str(log)})
        assert result.returncode == 0, result.stderr
    assert not log.exists()


def test_verify_manifest_syntax_error_is_one_line_exit_two(store):
    (store / "manifest.toml").write_text('[assets.wavlm-large]\npath = "a.pt\n')
    result = run_cli("verify", store)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"diarizen-lab: error: {store / 'manifest.toml'}:2: TOML syntax error: Illegal character '\\n'"
    ]


def test_verify_empty_or_missing_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, lines, _ = cli(capsys, "verify", tmp_path / "empty")
    assert code == 1 and lines[-1].startswith("nothing to verify")
    code, _, err = cli(capsys, "verify", tmp_path / "absent")
    assert code == 2 and "no such checkpoint folder" in err


def test_list_shows_name_kind_size_source_path(store, capsys):
    (store / "models--microsoft--wavlm-base-plus" / "blobs").rename(store / "lost-blobs")
    code, lines, _ = cli(capsys, "list", "--checkpoint-dir", store)
    assert code == 0
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert lines[0] == f"checkpoint store: {store} (manifest.toml)"
    assert lines[1].split() == ["NAME", "KIND", "SIZE", "SOURCE", "PATH"]
    size = (store / "wavlm" / "WavLM-Large.pt").stat().st_size
    assert rows["wavlm-large"] == ["wavlm-large", "wavlm", f"{size / 1024:.1f}", "KiB", "manifest",
                                   str(store / "wavlm" / "WavLM-Large.pt")]
    assert rows["plda"][1:2] + rows["plda"][4:] == ["plda", "folder", str(store / "plda")]
    assert rows["wavlm-base-plus"][1:4] == ["-", "-", "broken"]
    assert rows["wavlm-base"] == ["wavlm-base", "-", "-", "missing", "-"]


def test_repair_relinks_copied_cache_and_keeps_all_data(tmp_path, capsys):
    make_cache_tree(tmp_path / "machine-a", "microsoft/wavlm-base-plus", hf_model_dir(tmp_path / "src"))
    store = tmp_path / "checkpoints"
    shutil.copytree(tmp_path / "machine-a", store, symlinks=False)  # what scp -r does
    snapshot = store / "models--microsoft--wavlm-base-plus" / "snapshots" / COMMIT
    before = tree_contents(store)

    code, lines, _ = cli(capsys, "verify", store)
    assert code == 0 and all("plain copy" in line for line in lines if line.startswith("  ok"))

    code, lines, _ = cli(capsys, "repair", store, "--dry-run")
    assert code == 0 and lines[-1].startswith("would change 2 file(s)")
    assert not (snapshot / "config.json").is_symlink()

    code, lines, _ = cli(capsys, "repair", store)
    assert code == 0
    relinked = f"models--microsoft--wavlm-base-plus/snapshots/{COMMIT}/config.json"
    assert lines[0].startswith(f"relinked      {relinked}: moved back to its blob and re-linked")
    assert lines[-1] == "changed 2 file(s); 0 problem(s) need a new copy; nothing was deleted"
    assert (snapshot / "config.json").is_symlink() and (snapshot / "model.safetensors").is_symlink()
    assert tree_contents(store) == before

    code, lines, _ = cli(capsys, "verify", store)
    assert code == 0 and not any("plain copy" in line for line in lines)


def test_repair_with_unrepairable_blob_exits_one(store, capsys):
    blob = (store / "models--microsoft--wavlm-base-plus" / "snapshots" / COMMIT / "config.json").resolve()
    blob.unlink()
    code, lines, _ = cli(capsys, "repair", store)
    assert code == 1
    assert lines[0].startswith(f"unrepaired    models--microsoft--wavlm-base-plus/snapshots/{COMMIT}/config.json")
    assert lines[-1] == "changed 0 file(s); 1 problem(s) need a new copy; nothing was deleted"


def test_repair_materialize_turns_symlinks_into_hard_links(store, capsys):
    snapshot = store / "models--microsoft--wavlm-base-plus" / "snapshots" / COMMIT
    before = tree_contents(store)
    code, lines, _ = cli(capsys, "repair", store, "--materialize")
    assert code == 0
    assert [line.split()[0] for line in lines[:-1]] == ["materialized", "materialized"]
    assert "symlink replaced by a hard link of" in lines[0]
    for name in ("config.json", "pytorch_model.bin"):
        assert not (snapshot / name).is_symlink() and (snapshot / name).stat().st_nlink == 2
    assert tree_contents(store) == before
    assert cli(capsys, "verify", store)[0] == 0


def test_convert_resolves_the_source_by_name(tmp_path, capsys):
    from diarizen_lab.models.wavlm import WavLM, get_preset, load_wavlm

    torch.manual_seed(0)
    model = WavLM(get_preset("wavlm_tiny"))
    store = tmp_path / "checkpoints"
    store.mkdir()
    torch.save(model.state_dict(), store / "wavlm-tiny.pt")
    destination = tmp_path / "converted.pt"

    code, lines, _ = cli(capsys, "convert", "wavlm-tiny", destination, "--checkpoint-dir", store)
    assert code == 0
    assert lines == [f"wrote {destination}: WavLM with 2 layers, converted from {store / 'wavlm-tiny.pt'}"]
    converted = load_wavlm(destination).state_dict()
    assert converted.keys() == model.state_dict().keys()
    assert all(torch.equal(converted[key], value) for key, value in model.state_dict().items())

    code, _, err = cli(capsys, "convert", "wavlm-tiny", destination, "--checkpoint-dir", store)
    assert code == 2 and "exists (pass --force" in err
    code, _, err = cli(capsys, "convert", "wavlm-large", tmp_path / "other.pt", "--checkpoint-dir", store)
    assert code == 2 and err.startswith("diarizen-lab: error: asset 'wavlm-large' not found; searched: ")
    assert not (tmp_path / "other.pt").exists()
