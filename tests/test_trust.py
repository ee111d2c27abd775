"""Trust: loading a file never runs code, nothing is written outside its target, no name is resolved.

The payloads here create a marker file when they run; each test first shows that its payload is live (it runs
where code execution is allowed), then that our loaders refuse it without running it.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diarizen_lab import OFFLINE_DEFAULTS
from diarizen_lab.errors import InputError
from diarizen_lab.evaluation.embedding import load_embedding
from diarizen_lab.models.io import allowed_architecture, load_model_file, save_model
from diarizen_lab.store import Status, check_file, repair_tree, resolve_asset
from diarizen_lab.utils import netguard
from test_bad_inputs import COMMIT, PAYLOAD_MARKER, Payload, cache_tree, tiny_model

# ---------------------------------------------------------------------------------------------------------
# Loading never runs code


def test_architecture_outside_the_allow_list_is_refused_before_import():
    assert "this" not in sys.modules  # `import this` prints the Zen of Python: a visible side effect
    with pytest.raises(ValueError, match=r"architecture 'this\.s' is not in an allowed package"):
        allowed_architecture("this.s")
    assert "this" not in sys.modules
    with pytest.raises(ValueError, match="is not in an allowed package"):
        allowed_architecture("diarizen_lab_evil.models.Model")  # a prefix of ours is not ours
    with pytest.raises(ValueError, match="is not a model class"):
        allowed_architecture("diarizen_lab.models.io.save_model")
    from diarizen_lab.models.wavlm_conformer import WavLMConformer

    assert allowed_architecture("diarizen_lab.models.wavlm_conformer.WavLMConformer") is WavLMConformer


def test_model_file_naming_os_system_runs_nothing(tmp_path):
    marker = tmp_path / PAYLOAD_MARKER
    path = save_model(tmp_path / "model.pt", tiny_model())
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["model"] = {"path": "os.system", "args": {"command": f"touch {marker}"}}
    torch.save(checkpoint, path)
    with pytest.raises(InputError, match="architecture 'os.system' is not in an allowed package"):
        load_model_file(path)
    assert not marker.exists()
    from diarizen_lab.config import instantiate

    instantiate(checkpoint["model"])  # what loading did before the allow-list: the command runs
    assert marker.exists()


def wespeaker_folder(folder: Path, hyper_parameters) -> Path:
    folder.mkdir(parents=True)
    torch.save({"state_dict": {}, "hyper_parameters": hyper_parameters}, folder / "pytorch_model.bin")
    (folder / "config.yaml").write_text("model: pyannote.audio.models.embedding.WeSpeakerResNet34\n")
    return folder


def test_embedding_asset_with_a_pickle_payload_is_refused_and_verify_says_so(tmp_path):
    marker = tmp_path / PAYLOAD_MARKER
    folder = wespeaker_folder(tmp_path / "store" / "wespeaker-resnet34-lm", Payload(tmp_path))
    with pytest.raises(InputError, match="its pickle names posix.system, which is not weights"):
        load_embedding("wespeaker-resnet34-lm", checkpoint_dir=tmp_path / "store")
    check = check_file(folder / "pytorch_model.bin")
    assert (check.status, check.detail.split(",")[0]) == (Status.UNSAFE, "its pickle names posix.system")
    assert not marker.exists()
    torch.load(folder / "pytorch_model.bin", weights_only=False)  # what pyannote's from_pretrained does
    assert marker.exists()


def test_embedding_checkpoint_of_a_foreign_class_is_refused(tmp_path):
    folder = wespeaker_folder(tmp_path / "emb", {})
    checkpoint = torch.load(folder / "pytorch_model.bin", weights_only=True)
    checkpoint["pyannote.audio"] = {"architecture": {"module": "subprocess", "class": "Popen"}}
    torch.save(checkpoint, folder / "pytorch_model.bin")
    with pytest.raises(InputError, match="architecture 'subprocess.Popen' is not in an allowed package"):
        load_embedding(folder)


# ---------------------------------------------------------------------------------------------------------
# Nothing is read or written outside a cache tree


def test_repair_materialize_never_hard_links_a_file_from_outside_the_tree(tmp_path):
    secret = tmp_path / "outside" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"not the store's")
    snapshot = cache_tree(tmp_path / "store" / "models--acme--model", {"config.yaml": b"a: 1\n"})
    (snapshot / "pytorch_model.bin").symlink_to(secret)
    actions = {action.path.name: action for action in repair_tree(tmp_path / "store", materialize=True)}
    assert actions["pytorch_model.bin"].action == "unrepaired"
    assert "links outside its cache tree" in actions["pytorch_model.bin"].detail
    assert actions["config.yaml"].action == "materialized"  # the tree's own blob is
    assert (snapshot / "pytorch_model.bin").is_symlink() and secret.stat().st_nlink == 1


def test_manifest_entry_may_name_a_tree_outside_the_store_and_repair_never_writes_there(tmp_path):
    snapshot = cache_tree(tmp_path / "shared" / "models--acme--model", {"config.yaml": b"a: 1\n"})
    plain = snapshot / "weights.bin"  # a dereferenced copy: repair would re-link it if it were in the store
    plain.write_bytes(b"weights")
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.toml").write_text(f'[assets.model]\npath = "{snapshot.parent.parent}"\n')
    assert resolve_asset("model", checkpoint_dir=store) == snapshot  # the feature: a shared copy elsewhere
    assert repair_tree(store) == []
    assert not plain.is_symlink() and not (snapshot.parent.parent / "blobs" / "weights.bin").exists()


def test_revision_that_names_a_commit_folder_still_resolves(tmp_path):
    snapshot = cache_tree(tmp_path / "store" / "models--acme--model", {"config.yaml": b"a: 1\n"})
    (tmp_path / "store" / "manifest.toml").write_text(
        f'[assets.model]\npath = "models--acme--model"\nrevision = "{COMMIT}"\n'
    )
    assert resolve_asset("model", checkpoint_dir=tmp_path / "store") == snapshot


def test_config_asset_resolved_through_the_store_is_refused_when_it_leaves_its_tree(tmp_path, monkeypatch):
    from diarizen_lab.config import resolve_reference
    from diarizen_lab.store import AssetNotFoundError

    secret = tmp_path / "outside.pt"
    secret.write_bytes(b"not the store's")
    snapshot = cache_tree(tmp_path / "store" / "models--acme--model", {"config.yaml": b"a: 1\n"})
    (snapshot / "pytorch_model.bin").symlink_to(secret)
    monkeypatch.setenv("DIARIZEN_LAB_CHECKPOINTS", str(tmp_path / "store"))
    asset = resolve_reference("acme/model", tmp_path)  # a name: the store's asset
    assert asset.problem is not None and "pytorch_model.bin links outside its cache tree" in asset.problem
    with pytest.raises(InputError, match="asset 'acme/model' not found .*links outside its cache tree"):
        asset.require()
    with pytest.raises(AssetNotFoundError, match="links outside its cache tree"):  # a path: the same rule
        resolve_reference("store/models--acme--model", tmp_path)


def test_model_and_training_state_with_a_pickle_payload_are_refused_as_unsafe(tmp_path):
    from diarizen_lab.training.checkpoint import STATE_FILE, load_training_state

    path = save_model(tmp_path / "model.pt", tiny_model(), meta={"note": Payload(tmp_path)})
    with pytest.raises(InputError, match="model.pt: model checkpoint refused as unsafe: its pickle names posix"):
        load_model_file(path)
    torch.save({"optimizer": Payload(tmp_path)}, tmp_path / STATE_FILE)
    with pytest.raises(InputError, match="training state refused as unsafe: its pickle names posix.system"):
        load_training_state(tmp_path)
    assert not (tmp_path / PAYLOAD_MARKER).exists()



def test_wavlm_file_with_a_pickle_payload_is_refused_as_unsafe(tmp_path):
    from diarizen_lab.models.wavlm.formats import load_wavlm_checkpoint

    path = tmp_path / "wavlm.pt"
    torch.save({"cfg": Payload(tmp_path), "model": {}}, path)  # a fairseq-style file whose cfg runs a command
    with pytest.raises(InputError, match="wavlm.pt: WavLM checkpoint refused as unsafe: its pickle names posix"):
        load_wavlm_checkpoint(path)
    assert not (tmp_path / PAYLOAD_MARKER).exists()
    torch.load(path, weights_only=False)  # what a plain torch.load does
    assert (tmp_path / PAYLOAD_MARKER).exists()

def flatten(file: Path) -> str:
    """Replace a symlink by a text file holding its target, as copy tools without symlinks do."""
    target = os.readlink(file)
    file.unlink()
    file.write_text(target)
    return target


def test_flattened_links_are_read_through_verified_and_re_linked(tmp_path):
    from diarizen_lab.store import AssetNotFoundError, verify_store

    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"outside")
    store = tmp_path / "store"
    weights = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, weights)
    files = {"config.yaml": b"a: 1\n", "pytorch_model.bin": weights.getvalue()}
    snapshot = cache_tree(store / "models--acme--model", files)
    targets = {name: flatten(snapshot / name) for name in files}
    (snapshot / "escape.txt").write_text(os.path.relpath(secret, snapshot))  # names a file outside: not a link
    (snapshot / "other.txt").write_text("../../refs/main")  # a file of the tree, but not a blob: not a link
    checks = {check.path.name: check for section in verify_store(store) for check in section.checks}
    assert {name: checks[name].status for name in checks} == {
        "config.yaml": Status.FLATTENED, "pytorch_model.bin": Status.FLATTENED,
        "escape.txt": Status.OK, "other.txt": Status.OK,
    }
    assert all(check.ok for check in checks.values())
    assert "checkpoints repair" in checks["config.yaml"].fix
    blob = resolve_asset("acme/model/pytorch_model.bin", checkpoint_dir=store)  # a file: read through
    assert blob.read_bytes() == files["pytorch_model.bin"] and blob.parent.name == "blobs"
    with pytest.raises(AssetNotFoundError, match="config.yaml is a symlink flattened into a text file.*repair"):
        resolve_asset("acme/model", checkpoint_dir=store)  # a folder: its reader would read the text

    actions = {action.path.name: action.action for action in repair_tree(store)}
    assert actions == {"config.yaml": "relinked", "pytorch_model.bin": "relinked", "escape.txt": "kept",
                       "other.txt": "kept"}
    assert {name: os.readlink(snapshot / name) for name in files} == targets
    assert (snapshot / "escape.txt").read_text() == os.path.relpath(secret, snapshot)
    (snapshot / "escape.txt").unlink()
    (snapshot / "other.txt").unlink()
    assert resolve_asset("acme/model", checkpoint_dir=store) == snapshot
    assert [check.status for section in verify_store(store) for check in section.checks] == [Status.OK] * 2


def test_flattened_links_of_the_upstream_fixture_tree(tmp_path):
    from diarizen_lab.store import verify_store

    hub = Path(__file__).resolve().parents[1].parent / "shared" / "upstream-fixtures" / "hub"
    if not hub.is_dir():
        pytest.skip(f"{hub} is absent (the shared upstream fixtures)")
    store = tmp_path / "store"
    shutil.copytree(hub, store)
    store.chmod(0o755)
    for folder in store.rglob("*"):
        folder.chmod(0o755 if folder.is_dir() else 0o644)
    statuses = [check.status for section in verify_store(store) for check in section.checks]
    assert statuses == [Status.FLATTENED] * 4
    name = "BUT-FIT/diarizen-tiny-base-pruned"
    assert resolve_asset(f"{name}/plda/plda.npz", checkpoint_dir=store).parent.name == "blobs"
    assert [action.action for action in repair_tree(store)] == ["relinked"] * 4
    snapshot = resolve_asset(name, checkpoint_dir=store)
    assert (snapshot / "config.toml").is_symlink() and (snapshot / "plda" / "plda.npz").is_symlink()
    assert [check.status for section in verify_store(store) for check in section.checks] == [Status.OK] * 4


# ---------------------------------------------------------------------------------------------------------
# Text formats


def test_byte_order_mark_is_skipped_and_numbers_are_plain_decimals(tmp_path):
    from diarizen_lab.data.rttm import read_rttm
    from diarizen_lab.data.text_lines import parse_seconds
    from diarizen_lab.data.wav_scp import read_wav_scp

    line = "SPEAKER meeting1 1 0.5 2 <NA> <NA> alice <NA> <NA>\n"
    (tmp_path / "bom.rttm").write_bytes(b"\xef\xbb\xbf" + line.encode())
    (tmp_path / "plain.rttm").write_text(line)
    assert read_rttm(tmp_path / "bom.rttm") == read_rttm(tmp_path / "plain.rttm")
    (tmp_path / "wav.scp").write_bytes(b"\xef\xbb\xbfmeeting1 a.wav\n")
    assert list(read_wav_scp(tmp_path / "wav.scp")) == ["meeting1"]
    for text, value in [("12", 12.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("1e-3", 0.001), ("-1.5", -1.5)]:
        assert parse_seconds(text, "start time", "x", 1) == value
    for text, problem in [("1_0.5", "is not a number"), ("0x10", "is not a number"), ("nan", "is not a finite"),
                          ("-inf", "is not a finite"), ("1e999", "is not a finite"), ("2e9", "is too large")]:
        with pytest.raises(InputError, match=f"x:1: start time '{text}' {problem}"):
            parse_seconds(text, "start time", "x", 1)


# ---------------------------------------------------------------------------------------------------------
# No packet leaves


def test_guard_refuses_name_resolution_and_logs_it(tmp_path, monkeypatch):
    assert netguard.is_installed()
    log = tmp_path / "net.log"
    monkeypatch.setenv("DIARIZEN_LAB_NETWORK_LOG", str(log))
    for resolve, argument in [(socket.getaddrinfo, ("otel.pyannote.ai", 443)), (socket.gethostbyname, ("hf.co",)),
                              (socket.gethostbyname_ex, ("hf.co",)), (socket.gethostbyaddr, ("192.0.2.1",)),
                              (socket.getnameinfo, (("192.0.2.1", 443), 0))]:
        with pytest.raises(netguard.NetworkBlockedError, match="refused (name resolution|reverse lookup) of"):
            resolve(*argument)
    assert len(log.read_text().splitlines()) == 5
    assert socket.getaddrinfo("localhost", 80)[0][4][0] in ("127.0.0.1", "::1")
    assert socket.getaddrinfo("192.0.2.1", 80)[0][4][0] == "192.0.2.1"  # numeric: no query (connect is refused)
    assert socket.gethostbyaddr("127.0.0.1")
    assert len(log.read_text().splitlines()) == 5


IMPORTED_FIRST = (
    "import os, sys, pyannote.audio, huggingface_hub.constants as hub; "
    "from pyannote.audio.telemetry.metrics import is_metrics_enabled; "
    "before = (os.environ['PYANNOTE_METRICS_ENABLED'], hub.HF_HUB_OFFLINE); "
    "import diarizen_lab; from huggingface_hub import is_offline_mode; from diarizen_lab.cli import main; "
    "print(*before, os.environ['PYANNOTE_METRICS_ENABLED'], is_metrics_enabled(), is_offline_mode()); "
    "sys.exit(main(['doctor', '--checkpoint-dir', sys.argv[1]]))"
)


def test_telemetry_and_hub_are_off_even_when_imported_before_diarizen_lab(tmp_path):
    clean = {name: value for name, value in os.environ.items() if name not in OFFLINE_DEFAULTS}
    runs = {  # started together: the interpreter start-ups overlap
        enabled: subprocess.Popen(
            [sys.executable, "-c", IMPORTED_FIRST, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**clean, **({"PYANNOTE_METRICS_ENABLED": enabled} if enabled else {})},
        )
        for enabled in ("", "1")
    }
    outputs = {enabled: process.communicate(timeout=300) for enabled, process in runs.items()}
    # pyannote turned its telemetry on and the hub was online; importing diarizen_lab turned both off
    out, err = outputs[""]
    assert out.splitlines()[0].split() == ["true", "False", "0", "False", "True"], err
    assert runs[""].returncode == 0 and "[ok] telemetry                  off (PYANNOTE_METRICS_ENABLED='0')" in out, out
    # the user's own choice is kept, and doctor says what it does
    out, err = outputs["1"]
    assert out.splitlines()[0].split() == ["1", "False", "1", "True", "True"], err
    assert runs["1"].returncode == 1, out
    assert "[!!] telemetry                  ON: pyannote.audio's telemetry is enabled" in out
    assert out.count("PYANNOTE_METRICS_ENABLED") == 1 and "1 problem(s) found" in out  # one row says it


def test_onnxruntime_imported_first_is_named_since_its_telemetry_cannot_be_stopped_then():
    code = "import onnxruntime, diarizen_lab.offline as o; print(o.telemetry_problems())"
    clean = {name: value for name, value in os.environ.items() if name not in OFFLINE_DEFAULTS}
    late = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean, timeout=300)
    assert "onnxruntime was imported before diarizen_lab without ORT_DISABLE_TELEMETRY=1" in late.stderr
    assert late.stdout.strip() == "['onnxruntime was imported before diarizen_lab with its telemetry on']"
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**clean, "ORT_DISABLE_TELEMETRY": "1"})
    assert (chosen.stdout.strip(), chosen.stderr) == ("[]", "")


def test_data_synth_replaces_a_non_empty_folder_only_with_force(tmp_path, monkeypatch, capsys):
    from diarizen_lab.cli import main

    out = tmp_path / "corpus"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert main(["data", "synth", str(out), "--minutes", "0.1"]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng: the run stops at synthesis, past the check
    assert main(["data", "synth", str(out), "--minutes", "0.1", "--force"]) == 2
    assert "espeak-ng is not installed" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine\n"  # a failed run replaces nothing
