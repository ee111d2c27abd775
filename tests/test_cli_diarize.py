"""``diarizen-lab diarize``: checkpoint -> pyannote pipeline -> one RTTM per recording."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyannote.audio
import pytest
import torch

from diarizen_lab.data.rttm import read_rttm
from diarizen_lab.data.task import Task
from diarizen_lab.models.io import save_model
from diarizen_lab.models.wavlm_conformer import WavLMConformer

SAMPLE = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
FBANK_STATS = ["--set", 'diarization.embedding="fbank-stats"']


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diarizen_lab", *args], capture_output=True, text=True, env=os.environ, timeout=600
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = WavLMConformer(wavlm="random:wavlm_tiny", task=Task(chunk_size=5.0), attention_in=32, ffn_hidden=64,
                           num_layers=1)
    return save_model(tmp_path_factory.mktemp("model") / "model.pt", model)


def test_diarize_a_directory_and_skip_existing(tmp_path, checkpoint):
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(SAMPLE, audio / "meeting_a.wav")
    shutil.copy(SAMPLE, audio / "meeting_b.wav")
    out = tmp_path / "out"
    result = run_cli("diarize", "-c", str(checkpoint), "-i", str(audio), "-o", str(out), *FBANK_STATS,
                     "--set", "diarization.window=5.0")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["meeting_a.rttm", "meeting_b.rttm"]
    first = read_rttm(out / "meeting_a.rttm")
    assert first, "a 30 s file with speech must produce turns"
    assert {turn.recording for turn in first} == {"meeting_a"}
    assert max(turn.end for turn in first) <= 30.0 + 1e-3
    assert [(t.start, t.end, t.speaker) for t in first] == [
        (t.start, t.end, t.speaker) for t in read_rttm(out / "meeting_b.rttm")
    ]
    (out / "meeting_b.rttm").write_text("")  # a finished recording is kept with --skip-existing
    result = run_cli("diarize", "-c", str(checkpoint), "-i", str(audio), "-o", str(out), *FBANK_STATS,
                     "--skip-existing")
    assert result.returncode == 0, result.stderr
    assert "wrote 0 RTTM file(s)" in result.stdout
    assert (out / "meeting_b.rttm").read_text() == ""


def test_bad_inputs_are_one_line_errors(tmp_path, checkpoint):
    scp = tmp_path / "wav.scp"
    scp.write_text("rec1\n")
    result = run_cli("diarize", "-c", str(checkpoint), "-i", str(scp), "-o", str(tmp_path / "out"), *FBANK_STATS)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"diarizen-lab: error: {scp}:1: expected '<recording> <path>', got one field (add the audio path after the recording name)"
    ]
    result = run_cli("diarize", "-c", str(checkpoint), "-i", str(SAMPLE), "-o", str(tmp_path / "out"),
                     "--set", "diarization.clustering=kmeans")
    assert result.returncode == 2 and "clustering must be one of ahc, vbx" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
