"""Corpus preparation: AMI (shared AMI-diarization-setup lists), TextGrid parsing, AISHELL-4, AliMeeting."""

import codecs
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diarizen_lab.cli import main
from diarizen_lab.data.check import check_data_dir
from diarizen_lab.data.corpora.aishell4 import prepare_aishell4
from diarizen_lab.data.corpora.alimeeting import prepare_alimeeting
from diarizen_lab.data.corpora.ami import prepare_ami
from diarizen_lab.data.corpora.textgrid import Interval, Tier, read_textgrid, textgrid_turns
from diarizen_lab.data.rttm import Turn, read_rttm
from diarizen_lab.data.uem import read_uem
from diarizen_lab.data.wav_scp import read_wav_scp
from diarizen_lab.errors import DiarizenLabError, InputError

AMI_SETUP = Path(__file__).resolve().parents[1].parent / "shared" / "ami-setup"
needs_ami_setup = pytest.mark.skipif(
    not (AMI_SETUP / "lists").is_dir(), reason=f"AMI-diarization-setup not found at {AMI_SETUP}"
)


# AMI


@pytest.fixture
def ami_root(tmp_path) -> Path:
    """Every AMI meeting of the setup lists, each stream a link to 0.1 s of silence."""
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(1600, dtype=np.float32), 16000)
    root = tmp_path / "amicorpus"
    for split in ("train", "dev", "test"):
        for meeting in (AMI_SETUP / "lists" / f"{split}.meetings.txt").read_text().split():
            (root / meeting / "audio").mkdir(parents=True)
            for stream in ("Array1-01", "Mix-Headset"):
                (root / meeting / "audio" / f"{meeting}.{stream}.wav").symlink_to(silence)
    return root


@needs_ami_setup
def test_prepare_ami_writes_136_18_16_meetings(ami_root, tmp_path):
    counts = prepare_ami(ami_root, AMI_SETUP, tmp_path / "ami")
    assert counts == {mic: {"train": 136, "dev": 18, "test": 16} for mic in ("sdm", "ihm-mix")}
    for mic, stream in (("sdm", "Array1-01"), ("ihm-mix", "Mix-Headset")):
        for split in ("train", "dev", "test"):
            out = tmp_path / "ami" / mic / split
            meetings = (AMI_SETUP / "lists" / f"{split}.meetings.txt").read_text().split()
            scp = read_wav_scp(out / "wav.scp")
            assert sorted(scp) == sorted(meetings)
            assert scp[meetings[0]] == ami_root / meetings[0] / "audio" / f"{meetings[0]}.{stream}.wav"
            reference = read_rttm(AMI_SETUP / "only_words" / "rttms" / f"{split}.rttm")
            assert milliseconds(read_rttm(out / "rttm")) == milliseconds(reference)
            uem = read_uem(out / "uem")
            assert sorted(uem) == sorted(meetings)
            assert uem[meetings[0]] == read_uem(AMI_SETUP / "uems" / split / f"{meetings[0]}.uem")[meetings[0]]
    # durations are checked by `data check`: the 0.1 s stand-ins are far shorter than the UEMs
    dev = tmp_path / "ami" / "sdm" / "dev"
    errors = check_data_dir(dev).errors
    assert len(errors) == 18
    end = read_uem(AMI_SETUP / "uems" / "dev" / "ES2011a.uem")["ES2011a"][-1][1]
    assert str(errors[0]) == (
        f"{dev}/uem: span of 'ES2011a' ends at {end:.3f} s, after its audio (0.100 s) "
        "(fix the UEM or the audio path)"
    )


def milliseconds(turns: list[Turn]) -> list[tuple[str, str, int, int]]:
    return sorted((t.recording, t.speaker, round(t.start * 1000), round(t.duration * 1000)) for t in turns)


@needs_ami_setup
def test_prepare_ami_reports_missing_audio(ami_root, tmp_path):
    for meeting in ("EN2001a", "IS1008a", "TS3003d"):
        (ami_root / meeting / "audio" / f"{meeting}.Array1-01.wav").unlink()
    with pytest.raises(DiarizenLabError) as error:
        prepare_ami(ami_root, AMI_SETUP, tmp_path / "ami", mics=("sdm",))
    message = str(error.value)
    assert message.startswith(
        f"3 of 170 AMI audio files are missing (e.g. {ami_root}/EN2001a/audio/EN2001a.Array1-01.wav, "
    )
    assert message.endswith(f"(download the Array1-01 streams from https://groups.inf.ed.ac.uk/ami/download/ "
                            f"into {ami_root}, or choose other --mic settings)")
    assert not (tmp_path / "ami").exists()
    prepare_ami(ami_root, AMI_SETUP, tmp_path / "ami", mics=("ihm-mix",))  # that stream is complete
    assert sorted(p.name for p in (tmp_path / "ami").iterdir()) == ["ihm-mix"]


@needs_ami_setup
def test_prep_ami_cli(ami_root, tmp_path, capsys):
    code = main(["data", "prep-ami", "--ami-root", str(ami_root), "--setup", str(AMI_SETUP),
                 "--out", str(tmp_path / "ami"), "--mic", "sdm"])
    assert code == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'ami' / 'sdm'} (meetings: train 136, dev 18, test 16)\n"


def test_prepare_ami_needs_the_setup(tmp_path):
    with pytest.raises(InputError) as error:
        prepare_ami(tmp_path, tmp_path / "setup", tmp_path / "out")
    assert str(error.value) == (
        f"{tmp_path}/setup/lists/train.meetings.txt: missing meeting list "
        "(point --setup to a checkout of https://github.com/BUTSpeechFIT/AMI-diarization-setup)"
    )


# TextGrid

LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0 
xmax = 10.5 
tiers? <exists> 
size = 3 
item []: 
    item [1]:
        class = "IntervalTier" 
        name = "001-M" 
        xmin = 0 
        xmax = 10.5 
        intervals: size = 4 
        intervals [1]:
            xmin = 0 
            xmax = 1.25 
            text = "" 
        intervals [2]:
            xmin = 1.25 
            xmax = 3.5 
            text = "我们开始 ""吧""
第二行" 
        intervals [3]:
            xmin = 3.5 
            xmax = 4 
            text = "<%>" 
        intervals [4]:
            xmin = 4 
            xmax = 10.5 
            text = "好的" 
    item [2]:
        class = "TextTier" 
        name = "events" 
        xmin = 0 
        xmax = 10.5 
        points: size = 1 
        points [1]:
            number = 2.5 
            mark = "door" 
    item [3]:
        class = "IntervalTier" 
        name = "002 F" 
        xmin = 0 
        xmax = 10.5 
        intervals: size = 3 
        intervals [1]:
            xmin = 0 
            xmax = 3 
            text = "对" 
        intervals [2]:
            xmin = 3 
            xmax = 6 
            text = "  <$>  " 
        intervals [3]:
            xmin = 6 
            xmax = 10.5 
            text = "" 
'''

SHORT = '''File type = "ooTextFile"
Object class = "TextGrid"

0
10.5
<exists>
3
"IntervalTier"
"001-M"
0
10.5
4
0
1.25
""
1.25
3.5
"我们开始 ""吧""
第二行"
3.5
4
"<%>"
4
10.5
"好的"
"TextTier"
"events"
0
10.5
1
2.5
"door"
"IntervalTier"
"002 F"
0
10.5
3
0
3
"对"
3
6
"  <$>  "
6
10.5
""
'''


def test_textgrid_long_format(tmp_path):
    path = tmp_path / "s.TextGrid"
    path.write_text(LONG, encoding="utf-8")
    grid = read_textgrid(path)
    assert (grid.start, grid.end) == (0.0, 10.5)
    assert [(t.name, t.kind) for t in grid.tiers] == [("001-M", "IntervalTier"), ("events", "TextTier"),
                                                     ("002 F", "IntervalTier")]
    assert grid.tiers[0].intervals[1] == Interval(1.25, 3.5, '我们开始 "吧"\n第二行')
    assert grid.tiers[1] == Tier("events", "TextTier", [Interval(2.5, 2.5, "door")])
    assert textgrid_turns(grid, "s") == [
        Turn("s", 1.25, 3.5, "001-M"), Turn("s", 4.0, 10.5, "001-M"), Turn("s", 0.0, 3.0, "002_F"),
    ]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_textgrid_short_format_and_utf16_read_the_same(tmp_path, encoding):
    long, short = tmp_path / "long.TextGrid", tmp_path / "short.TextGrid"
    long.write_text(LONG, encoding="utf-8")
    short.write_text(SHORT, encoding=encoding)  # Python's utf-16 writes a byte-order mark, like Praat
    if encoding == "utf-16":
        assert short.read_bytes()[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    assert read_textgrid(short) == read_textgrid(long)


@pytest.mark.parametrize(
    "text, message",
    [
        ("hello", ": not a Praat text file (no 'ooTextFile' header) (save the TextGrid from Praat as a text file, "
                  "not binary)"),
        ('"ooTextFile"\n"Sound"\n', ": not a TextGrid (object class is not 'TextGrid')"),
        (LONG.replace("xmax = 3.5 ", 'xmax = "3.5"'), ':21: expected interval xmax, found \'"3.5"\''),
        (LONG.replace("size = 4", "size = 5"), ":33: expected interval xmin, found '\"TextTier\"'"),
        (LONG[: LONG.rindex('text = ""')], ": file ends where interval text was expected"),
        (LONG.replace("xmax = 1.25 ", "xmax = -1"),
         ": interval of tier '001-M' ends (-1.0) before it starts (0.0)"),
        (LONG.replace('"IntervalTier"', '"PointTier"', 1), ": unknown tier class 'PointTier'"),
    ],
)
def test_textgrid_errors(tmp_path, text, message):
    path = tmp_path / "bad.TextGrid"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as error:
        read_textgrid(path)
    assert str(error.value) == f"{path}{message}"


# AISHELL-4 and AliMeeting


def audio(path: Path, seconds: float, channels: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros((round(seconds * 16000), channels), dtype=np.float32), 16000)


def textgrid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LONG, encoding="utf-8")


@pytest.fixture
def aishell4_root(tmp_path) -> Path:
    root = tmp_path / "AISHELL-4"
    for subset, session in (("train_L", "20200706_L_R001S01C01"), ("train_M", "20200622_M_R002S07C01"),
                            ("train_S", "20200707_S_R001S02C01"), ("test", "20200715_L_R003S04C01")):
        audio(root / subset / "wav" / f"{session}.flac", 10.5)
        textgrid(root / subset / "TextGrid" / f"{session}.TextGrid")
    return root


def test_prepare_aishell4(aishell4_root, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        counts = prepare_aishell4(aishell4_root, tmp_path / "out")
    assert counts == {"train": 2, "test": 1}
    assert caplog.messages == [
        "skipping AISHELL-4 session 20200622_M_R002S07C01 "
        f"({aishell4_root}/train_M): its annotation is broken"
    ]
    train = tmp_path / "out" / "train"
    assert read_wav_scp(train / "wav.scp") == {
        "20200706_L_R001S01C01": aishell4_root / "train_L" / "wav" / "20200706_L_R001S01C01.flac",
        "20200707_S_R001S02C01": aishell4_root / "train_S" / "wav" / "20200707_S_R001S02C01.flac",
    }
    assert (train / "rttm").read_text().splitlines()[:3] == [
        "SPEAKER 20200706_L_R001S01C01 1 0.000 3.000 <NA> <NA> 002_F <NA> <NA>",
        "SPEAKER 20200706_L_R001S01C01 1 1.250 2.250 <NA> <NA> 001-M <NA> <NA>",
        "SPEAKER 20200706_L_R001S01C01 1 4.000 6.500 <NA> <NA> 001-M <NA> <NA>",
    ]
    assert read_uem(train / "uem") == {
        "20200706_L_R001S01C01": [(0.0, 10.5)], "20200707_S_R001S02C01": [(0.0, 10.5)],
    }
    report = check_data_dir(train)
    assert report.problems == [] and report.summary.max_speakers == 2


def test_prepare_aishell4_reports_missing_textgrids(aishell4_root, tmp_path):
    (aishell4_root / "test" / "TextGrid" / "20200715_L_R003S04C01.TextGrid").unlink()
    with pytest.raises(DiarizenLabError) as error:
        prepare_aishell4(aishell4_root, tmp_path / "out")
    assert str(error.value) == (
        f"1 of 8 AISHELL-4 files are missing (e.g. {aishell4_root}/test/TextGrid/20200715_L_R003S04C01.TextGrid) "
        "(download and extract AISHELL-4 from https://www.openslr.org/111/)"
    )
    assert not (tmp_path / "out").exists()


def test_prepare_alimeeting(tmp_path):
    root = tmp_path / "AliMeeting"
    audio(root / "Eval_Ali" / "Eval_Ali_far" / "audio_dir" / "R8001_M8004_MS801.wav", 10.5)
    textgrid(root / "Eval_Ali" / "Eval_Ali_far" / "textgrid_dir" / "R8001_M8004.TextGrid")
    audio(root / "Test_Ali_far" / "audio_dir" / "R8003_M8001_MS801.wav", 11.0)
    textgrid(root / "Test_Ali_far" / "textgrid_dir" / "R8003_M8001.TextGrid")
    code = main(["data", "prep-alimeeting", "--root", str(root), "--out", str(tmp_path / "out")])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dev", "test"]
    assert list(read_wav_scp(tmp_path / "out" / "dev" / "wav.scp")) == ["R8001_M8004_MS801"]
    assert {t.recording for t in read_rttm(tmp_path / "out" / "test" / "rttm")} == {"R8003_M8001_MS801"}
    assert read_uem(tmp_path / "out" / "test" / "uem") == {"R8003_M8001_MS801": [(0.0, 11.0)]}


def test_prepare_alimeeting_without_data(tmp_path):
    with pytest.raises(DiarizenLabError, match="has no far-field AliMeeting data"):
        prepare_alimeeting(tmp_path, tmp_path / "out")
