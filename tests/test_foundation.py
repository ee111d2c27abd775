"""Foundation: atomic writes, the network guard, one-line errors, the CLI entry point."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from diarizen_lab.errors import InputError
from diarizen_lab.utils import netguard
from diarizen_lab.utils.atomic import atomic_dir, atomic_open


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diarizen_lab", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
    )


def test_input_error_is_one_line_with_location_and_fix():
    error = InputError("expected 10 fields, got 8", path="data/train/rttm", line=123, fix="see the RTTM spec")
    assert str(error) == "data/train/rttm:123: expected 10 fields, got 8 (see the RTTM spec)"
    assert str(InputError("config file not found", path="x.toml")) == "x.toml: config file not found"


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.rttm"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.rttm"]
    with atomic_open(target) as f:
        f.write("new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.rttm"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "epoch_0001"
    with atomic_dir(target) as tmp:
        (tmp / "model.pt").write_bytes(b"v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "model.pt").write_bytes(b"v2-partial")
            raise RuntimeError("killed during save")
    assert (target / "model.pt").read_bytes() == b"v1"
    with atomic_dir(target) as tmp:
        (tmp / "model.pt").write_bytes(b"v2")
    assert (target / "model.pt").read_bytes() == b"v2"
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0001"]


def test_network_guard_refuses_outbound_and_logs(tmp_path, monkeypatch):
    assert netguard.is_installed()
    log = tmp_path / "net.log"
    monkeypatch.setenv("DIARIZEN_LAB_NETWORK_LOG", str(log))
    with pytest.raises(netguard.NetworkBlockedError, match="refused connection to"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with socket.socket() as s, pytest.raises(netguard.NetworkBlockedError):
        s.connect(("93.184.216.34", 80))
    assert len(log.read_text().splitlines()) == 2


def test_network_guard_allows_loopback():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            connection, _ = server.accept()
            connection.close()


def test_importing_sets_offline_defaults():
    result = subprocess.run(
        [sys.executable, "-c", "import os, diarizen_lab; print(os.environ['HF_HUB_OFFLINE'],"
         " os.environ['TRANSFORMERS_OFFLINE'], os.environ['PYANNOTE_METRICS_ENABLED'])"],
        capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k not in diarizen_lab_offline_vars()},
    )
    assert result.stdout.split() == ["1", "1", "0"]


def diarizen_lab_offline_vars() -> set[str]:
    from diarizen_lab import OFFLINE_DEFAULTS

    return set(OFFLINE_DEFAULTS)


def test_cli_help_lists_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "doctor" in result.stdout


def test_doctor_runs_offline_without_network_attempts(tmp_path):
    log = tmp_path / "net.log"
    result = run_cli("doctor", "--checkpoint-dir", str(tmp_path / "checkpoints"),
                     env={"DIARIZEN_LAB_NETWORK_LOG": str(log)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no GPU" in result.stdout or "gpu 0" in result.stdout
    assert "network guard" in result.stdout and "on: outbound connections refused" in result.stdout
    assert "Traceback" not in result.stderr
    assert not log.exists()


def test_doctor_fails_when_offline_mode_is_disabled(tmp_path):
    result = run_cli("doctor", "--checkpoint-dir", str(tmp_path), env={"HF_HUB_OFFLINE": "0"})
    assert result.returncode == 1
    assert "[!!] HF_HUB_OFFLINE" in result.stdout


def test_doctor_checks_the_assets_a_diarization_config_loads(tmp_path):
    """VBx loads the embedding model and the PLDA from the store; fbank-stats with AHC loads nothing."""
    conf = Path(__file__).resolve().parents[1] / "conf" / "diarization"
    store = tmp_path / "checkpoints"
    result = run_cli("doctor", "--checkpoint-dir", str(store), "-C", str(conf / "wespeaker_vbx.toml"))
    assert result.returncode == 1
    assert "[!!] wespeaker-resnet34-lm" in result.stdout and "[!!] plda" in result.stdout
    result = run_cli("doctor", "--checkpoint-dir", str(store), "-C", str(conf / "fbank_stats_ahc.toml"))
    assert "assets needed by" in result.stdout and ": none" in result.stdout
    assert result.returncode == 0, result.stdout


def test_doctor_checks_the_assets_a_config_needs(tmp_path):
    """The assets are the config's values of arguments typed as assets (here [model] wavlm_checkpoint)."""
    config = Path(__file__).resolve().parents[1] / "conf" / "wavlm_updated_conformer.toml"
    store = tmp_path / "checkpoints"
    result = run_cli("doctor", "--checkpoint-dir", str(store), "-C", str(config))
    assert result.returncode == 1
    assert "assets needed by" in result.stdout and "[!!] wavlm-base-plus" in result.stdout
    (store / "wavlm-base-plus.pt").parent.mkdir()
    import torch

    torch.save({"cfg": {}, "model": {}}, store / "wavlm-base-plus.pt")
    result = run_cli("doctor", "--checkpoint-dir", str(store), "-C", str(config))
    assert result.returncode == 0, result.stdout
    assert "[ok] wavlm-base-plus" in result.stdout
