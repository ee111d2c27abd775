"""Parsers of wav.scp / rttm / uem and the loading of a data directory."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diarizen_lab.data.datadir import DataDir, clip_turns, scan_data_dir
from diarizen_lab.data.rttm import Turn, read_rttm, to_annotations, write_rttm
from diarizen_lab.data.uem import read_uem, write_uem
from diarizen_lab.data.wav_scp import read_wav_scp, write_wav_scp
from diarizen_lab.errors import InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def silence(path: Path, seconds: float, sample_rate: int = 16000, channels: int = 1) -> Path:
    sf.write(path, np.zeros((round(seconds * sample_rate), channels), dtype=np.float32), sample_rate)
    return path


# wav.scp


def test_wav_scp_resolves_relative_paths_against_its_directory(tmp_path):
    scp = write(tmp_path / "wav.scp", "a wav/a.wav\n\nb /abs/b c.wav\n")
    assert read_wav_scp(scp) == {"a": tmp_path / "wav" / "a.wav", "b": Path("/abs/b c.wav")}


@pytest.mark.parametrize(
    "text, message",
    [
        ("a a.wav\nb\n", "wav.scp:2: expected '<recording> <path>', got one field (add the audio path after the "
                         "recording name)"),
        ("a sox a.sph -t wav - |\n", "wav.scp:1: piped commands are not supported ('sox a.sph -t wav - |')"),
        ("a a.wav\nb b.wav\na c.wav\n", "wav.scp:3: recording 'a' is already listed on line 1"),
    ],
)
def test_wav_scp_errors_name_file_and_line(tmp_path, text, message):
    scp = write(tmp_path / "wav.scp", text)
    with pytest.raises(InputError) as error:
        read_wav_scp(scp)
    assert str(error.value).startswith(f"{tmp_path}/{message}")


def test_wav_scp_round_trip(tmp_path):
    write_wav_scp(tmp_path / "wav.scp", {"b": "/x/b.wav", "a": "/x/a.wav"})
    assert (tmp_path / "wav.scp").read_text() == "a /x/a.wav\nb /x/b.wav\n"
    assert read_wav_scp(tmp_path / "wav.scp") == {"a": Path("/x/a.wav"), "b": Path("/x/b.wav")}


# rttm


def test_rttm_reads_speaker_lines_with_na_fields(tmp_path):
    rttm = write(tmp_path / "rttm", (
        ";; comment\n"
        "SPEAKER rec1 1 3.34 0.54 <NA> <NA> MEO069 <NA> <NA>\n"
        "SPKR-INFO rec1 1 <NA> <NA> <NA> unknown MEO069 <NA> <NA>\n"
        "\n"
        "SPEAKER rec1 <NA> 5.5 0 <NA> <NA> FEE005 0.9 <NA>\n"
    ))
    turns = read_rttm(rttm)
    assert turns == [Turn("rec1", 3.34, 3.88, "MEO069"), Turn("rec1", 5.5, 5.5, "FEE005")]
    assert [t.line for t in turns] == [2, 5]
    assert turns[0].duration == pytest.approx(0.54)


@pytest.mark.parametrize(
    "line, message",
    [
        ("SPEAKER rec1 1 3.34 0.54 <NA> <NA> spk", "rttm:2: expected 10 fields, got 8"),
        ("SPEAKR rec1 1 3.34 0.54 <NA> <NA> spk <NA> <NA>", "rttm:2: unknown RTTM line type 'SPEAKR' (speaker "
                                                           "turns are 'SPEAKER' lines)"),
        ("SPEAKER rec1 1 3.3.4 0.54 <NA> <NA> spk <NA> <NA>", "rttm:2: start time '3.3.4' is not a number"),
        ("SPEAKER rec1 1 3.34 nan <NA> <NA> spk <NA> <NA>", "rttm:2: duration 'nan' is not a finite number"),
        ("SPEAKER rec1 1 3.34 -0.5 <NA> <NA> spk <NA> <NA>", "rttm:2: negative duration -0.5"),
        ("SPEAKER rec1 1 -1 0.5 <NA> <NA> spk <NA> <NA>", "rttm:2: negative start time -1"),
        ("SPEAKER rec1 1 1 0.5 <NA> <NA> <NA> <NA> <NA>", "rttm:2: the speaker name is <NA>"),
    ],
)
def test_rttm_errors_name_file_and_line(tmp_path, line, message):
    rttm = write(tmp_path / "rttm", f"SPEAKER rec1 1 0 1 <NA> <NA> spk <NA> <NA>\n{line}\n")
    with pytest.raises(InputError) as error:
        read_rttm(rttm)
    assert str(error.value) == f"{tmp_path}/{message}"


def test_rttm_round_trip_and_annotations(tmp_path):
    turns = [Turn("b", 1.0, 2.5, "x"), Turn("a", 0.25, 1.0, "y"), Turn("a", 0.0, 0.5, "x")]
    write_rttm(tmp_path / "rttm", turns)
    assert (tmp_path / "rttm").read_text().splitlines() == [
        "SPEAKER a 1 0.000 0.500 <NA> <NA> x <NA> <NA>",
        "SPEAKER a 1 0.250 0.750 <NA> <NA> y <NA> <NA>",
        "SPEAKER b 1 1.000 1.500 <NA> <NA> x <NA> <NA>",
    ]
    annotations = to_annotations(read_rttm(tmp_path / "rttm"))
    assert sorted(annotations) == ["a", "b"]
    assert annotations["a"].uri == "a"
    assert annotations["a"].label_duration("x") == pytest.approx(0.5)
    assert annotations["b"].label_duration("x") == pytest.approx(1.5)


# uem


def test_uem_reads_sorted_spans(tmp_path):
    uem = write(tmp_path / "uem", "r1 1 10 20\nr2 1 0.000 1546.333312\nr1 1 0 5.5\n")
    assert read_uem(uem) == {"r1": [(0.0, 5.5), (10.0, 20.0)], "r2": [(0.0, 1546.333312)]}
    write_uem(tmp_path / "uem2", read_uem(uem))
    assert (tmp_path / "uem2").read_text() == "r1 1 0 5.5\nr1 1 10 20\nr2 1 0 1546.333312\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("r1 1 0\n", "uem:1: expected 4 fields '<recording> <channel> <start> <end>', got 3"),
        ("r1 1 0 x\n", "uem:1: end time 'x' is not a number"),
        ("r1 1 5 5\n", "uem:1: end 5 is not after start 5"),
        ("r1 1 -1 5\n", "uem:1: negative start time -1"),
        ("r1 1 0 10\nr1 1 9 12\n", "uem:2: span of 'r1' overlaps the span on line 1 (merge overlapping spans "
                                   "into one)"),
    ],
)
def test_uem_errors_name_file_and_line(tmp_path, text, message):
    uem = write(tmp_path / "uem", text)
    with pytest.raises(InputError) as error:
        read_uem(uem)
    assert str(error.value) == f"{tmp_path}/{message}"


# data directory


def test_clip_turns_cuts_at_span_edges():
    turns = [Turn("r", 0.5, 2.0, "a"), Turn("r", 3.0, 7.0, "b"), Turn("r", 9.0, 9.5, "c"), Turn("r", 4, 4, "d")]
    pieces, count, seconds = clip_turns(turns, [(1.0, 4.0), (6.0, 8.0)])
    assert pieces == [Turn("r", 1.0, 2.0, "a"), Turn("r", 3.0, 4.0, "b"), Turn("r", 6.0, 7.0, "b")]
    assert count == 3
    assert seconds == pytest.approx(0.5 + 2.0 + 0.5)


def make_dir(tmp_path: Path, rttm: str, uem: str | None = None, seconds: float = 10.0) -> Path:
    silence(tmp_path / "r1.wav", seconds)
    silence(tmp_path / "r2.wav", seconds)
    write(tmp_path / "wav.scp", "r1 r1.wav\nr2 r2.wav\n")
    write(tmp_path / "rttm", rttm)
    if uem is not None:
        write(tmp_path / "uem", uem)
    return tmp_path


def test_data_dir_sorts_speakers_clips_to_uem_and_warns_once(tmp_path, caplog):
    data = make_dir(
        tmp_path,
        rttm="SPEAKER r1 1 1.0 2.0 <NA> <NA> zed <NA> <NA>\n"
             "SPEAKER r1 1 0.2 0.5 <NA> <NA> amy <NA> <NA>\n"
             "SPEAKER r1 1 7.5 1.0 <NA> <NA> bob <NA> <NA>\n",
        uem="r1 1 1.0 8.0\n",
    )
    with caplog.at_level(logging.WARNING):
        data_dir = DataDir.load(data)
    assert list(data_dir.recordings) == ["r1", "r2"]
    r1, r2 = data_dir.recordings["r1"], data_dir.recordings["r2"]
    assert r1.speakers == ("bob", "zed")  # amy's turn lies before the UEM: clipped away
    assert [(t.start, t.end, t.speaker) for t in r1.turns] == [(1.0, 3.0, "zed"), (7.5, 8.0, "bob")]
    assert r1.spans == ((1.0, 8.0),)
    assert r2.spans == ((0.0, 10.0),)  # not in the UEM: whole file
    assert (r1.sample_rate, r1.num_channels, r1.num_samples) == (16000, 1, 160000)
    messages = [record.getMessage() for record in caplog.records]
    assert f"{data}/rttm: clipped 2 reference turns (1.00 s) that run past the UEM" in messages
    assert f"{data}/uem: recording 'r2' has no span; using all of it" in messages
    assert len(messages) == 2


def test_data_dir_without_uem_uses_whole_files(tmp_path):
    data = make_dir(tmp_path, rttm="SPEAKER r2 1 9.0 2.0 <NA> <NA> x <NA> <NA>\n")
    recordings = DataDir.load(data).recordings
    assert recordings["r1"].spans == ((0.0, 10.0),) and recordings["r1"].turns == ()
    assert [(t.start, t.end) for t in recordings["r2"].turns] == [(9.0, 10.0)]


@pytest.mark.parametrize(
    "rttm, uem, message",
    [
        ("SPEAKER r3 1 0 1 <NA> <NA> x <NA> <NA>\n", None,
         "rttm:1: recording 'r3' is not in wav.scp (add its audio to wav.scp or remove its turns)"),
        ("", "r1 1 0 10\nr9 1 0 3\n", "uem: recording 'r9' is not in wav.scp (add its audio to wav.scp or remove "
                                      "its spans)"),
        ("", "r1 1 0 12\n", "uem: span of 'r1' ends at 12.000 s, after its audio (10.000 s) (fix the UEM or the "
                            "audio path)"),
    ],
)
def test_data_dir_errors(tmp_path, rttm, uem, message):
    data = make_dir(tmp_path, rttm=rttm, uem=uem)
    with pytest.raises(InputError) as error:
        DataDir.load(data)
    assert str(error.value) == f"{data}/{message}"


def test_data_dir_reports_unreadable_audio_and_missing_files(tmp_path):
    data = make_dir(tmp_path, rttm="")
    write(data / "r2.wav", "not audio")
    recordings, problems = scan_data_dir(data)
    assert list(recordings) == ["r1"]
    assert [p.severity for p in problems] == ["error"]
    assert str(problems[0]).startswith(f"{data}/wav.scp: recording 'r2': cannot open {data}/r2.wav")
    (data / "rttm").unlink()
    with pytest.raises(InputError, match="missing rttm"):
        DataDir.load(data)
