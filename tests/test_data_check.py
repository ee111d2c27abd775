"""``diarizen-lab data check``: problems, summary table and exit codes."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diarizen_lab.cli import main
from diarizen_lab.data.check import Summary, check_data_dir, speech_and_overlap
from diarizen_lab.data.datadir import DataDir
from diarizen_lab.data.rttm import Turn

GOOD_RTTM = """\
SPEAKER r1 1 0.0 4.0 <NA> <NA> a <NA> <NA>
SPEAKER r1 1 3.0 3.0 <NA> <NA> b <NA> <NA>
SPEAKER r1 1 8.0 1.0 <NA> <NA> c <NA> <NA>
SPEAKER r2 1 1.0 2.0 <NA> <NA> a <NA> <NA>
"""


def make(path: Path, rttm: str = GOOD_RTTM, uem: str | None = "r1 1 0 10\nr2 1 0 5\n",
         rates: tuple[int, int] = (16000, 16000)) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, seconds, rate in (("r1", 10, rates[0]), ("r2", 5, rates[1])):
        sf.write(path / f"{name}.wav", np.zeros(seconds * rate, dtype=np.float32), rate)
    (path / "wav.scp").write_text("r1 r1.wav\nr2 r2.wav\n")
    (path / "rttm").write_text(rttm)
    if uem is not None:
        (path / "uem").write_text(uem)
    return path


def test_speech_and_overlap_merges_turns_of_one_speaker():
    turns = [Turn("r", 0, 4, "a"), Turn("r", 3, 6, "b"), Turn("r", 3.5, 5, "a"), Turn("r", 8, 9, "c")]
    assert speech_and_overlap(turns) == (7.0, 2.0)  # a: [0, 5), b: [3, 6): overlap [3, 5)


def test_summary_of_a_good_dir(tmp_path):
    summary = Summary.of(list(DataDir.load(make(tmp_path / "good")).recordings.values()))
    assert summary == Summary(recordings=2, hours=15 / 3600, min_speakers=1, mean_speakers=2.0, max_speakers=3,
                              overlap_percent=pytest.approx(100 * 1 / 9))


def test_check_good_dir_exits_0_with_a_table(tmp_path, capsys):
    good = make(tmp_path / "good")
    assert main(["data", "check", str(good)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["data", "dir", "recordings", "hours", "speakers", "min/mean/max", "overlap", "%",
                                "errors", "warnings"]
    assert lines[1].split() == [str(good), "2", "0.00", "1/2.0/3", "11.1", "0", "0"]
    assert len(lines) == 2


def test_check_reports_every_problem_and_exits_1(tmp_path):
    bad = make(
        tmp_path / "bad",
        rttm=GOOD_RTTM + "SPEAKER r3 1 0 1 <NA> <NA> a <NA> <NA>\n"
                         "SPEAKER r1 1 9.5 1.0 <NA> <NA> a <NA> <NA>\n"
                         "SPEAKER r1 1 1.0 0.5 <NA> <NA> a <NA> <NA>\n"
                         "SPEAKER r2 1 4.0 0 <NA> <NA> a <NA> <NA>\n",
        uem="r1 1 0 10\nr2 1 0 5.5\n",
    )
    (bad / "r5.wav").write_text("not audio")
    (bad / "wav.scp").write_text("r1 r1.wav\nr2 r2.wav\nr4 missing.wav\nr5 r5.wav\n")
    ok = make(tmp_path / "ok")
    result = subprocess.run(
        [sys.executable, "-m", "diarizen_lab", "data", "check", str(bad), str(ok)], capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f"error: {bad}/rttm:5: recording 'r3' is not in wav.scp (add its audio to wav.scp or remove its turns)",
        f"error: {bad}/uem: span of 'r2' ends at 5.500 s, after its audio (5.000 s) "
        "(fix the UEM or the audio path)",
        f"error: {bad}/wav.scp: recording 'r4': no file {bad}/missing.wav (fix its path in wav.scp)",
    ]
    assert lines[3].startswith(f"error: {bad}/wav.scp: recording 'r5': cannot open {bad}/r5.wav: ")
    assert lines[3].endswith("(fix the path or convert the file to WAV/FLAC)")
    assert lines[4:8] == [
        f"warning: {bad}/rttm: clipped 1 reference turns (0.50 s) that run past the UEM",
        f"warning: {bad}/rttm: 1 zero-duration turns (first on line 8)",
        f"warning: {bad}/rttm: 1 turns overlap an earlier turn of the same speaker (first on line 7); "
        "they count once",
        "",
    ]
    table = [line.split() for line in lines[-3:]]
    assert table[1] == [str(bad), "1", "0.00", "3/3.0/3", "13.3", "4", "3"]
    assert table[2] == [str(ok), "2", "0.00", "1/2.0/3", "11.1", "0", "0"]


def test_check_sample_rate_and_channel(tmp_path):
    path = make(tmp_path / "d", rates=(16000, 8000))
    report = check_data_dir(path)
    assert [str(p) for p in report.errors] == [
        f"{path}/wav.scp: recording 'r2' is at 8000 Hz, not 16000 Hz "
        "(resample the audio (sox in.wav -r 16000 out.wav) or set resample = true)"
    ]
    assert check_data_dir(path, resample=True).errors == []
    assert [str(p) for p in check_data_dir(path, resample=True, channel=1).errors] == [
        f"{path}/wav.scp: recording 'r1' has 1 channels, no channel 1",
        f"{path}/wav.scp: recording 'r2' has 1 channels, no channel 1",
    ]


def test_check_malformed_or_incomplete_dir_exits_1(tmp_path, capsys):
    path = make(tmp_path / "d", rttm="SPEAKER r1 1 0 1 <NA> <NA> a\n")
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"error: {path}/rttm:1: expected 10 fields, got 8"
    assert out.splitlines()[-1].split() == [str(path), "-", "-", "-", "-", "1", "0"]
    (path / "rttm").unlink()
    assert main(["data", "check", str(path)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        f"error: {path}: missing rttm (a data directory holds wav.scp, rttm and optionally uem)"
    )
