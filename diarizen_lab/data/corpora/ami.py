"""AMI meeting corpus with the AMI-diarization-setup partition (train/dev/test = 136/18/16 meetings).

Inputs: a local AMI download (``AMI_ROOT/<meeting>/audio/<meeting>.<stream>.wav``) and a checkout of
https://github.com/BUTSpeechFIT/AMI-diarization-setup (``lists/<split>.meetings.txt``,
``<annotations>/rttms/<split>/<meeting>.rttm``, ``uems/<split>/<meeting>.uem``). Output, per microphone
setting, ``OUT/<mic>/<split>/{wav.scp,rttm,uem}`` with absolute audio paths. Audio is only checked to exist;
``diarizen-lab data check`` compares durations with the UEMs.
"""

from __future__ import annotations

import os
from pathlib import Path

from diarizen_lab.data.corpora import missing_files_error
from diarizen_lab.data.datadir import write_data_dir
from diarizen_lab.data.rttm import Turn, read_rttm
from diarizen_lab.data.uem import Span, read_uem
from diarizen_lab.errors import DiarizenLabError, InputError

SPLITS = ("train", "dev", "test")
MICS = {"sdm": "Array1-01", "ihm-mix": "Mix-Headset"}
"""Microphone setting -> AMI audio stream: the first channel of array 1, or the mix of the headsets."""
ANNOTATIONS = ("only_words", "word_and_vocalsounds")
SETUP_URL = "https://github.com/BUTSpeechFIT/AMI-diarization-setup"


def read_meetings(setup_dir: Path, split: str) -> list[str]:
    path = setup_dir / "lists" / f"{split}.meetings.txt"
    if not path.is_file():
        raise InputError(
            "missing meeting list", path=path, fix=f"point --setup to a checkout of {SETUP_URL}",
        )
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_meeting_rttm(setup_dir: Path, annotations: str, split: str, meeting: str) -> list[Turn]:
    path = setup_dir / annotations / "rttms" / split / f"{meeting}.rttm"
    if not path.is_file():
        raise InputError("missing reference", path=path, fix=f"point --setup to a checkout of {SETUP_URL}")
    turns = read_rttm(path)
    for turn in turns:
        if turn.recording != meeting:
            raise InputError(f"turn of recording {turn.recording!r}, expected {meeting!r}", path=path,
                             line=turn.line)
    return turns


def read_meeting_uem(setup_dir: Path, split: str, meeting: str) -> list[Span]:
    path = setup_dir / "uems" / split / f"{meeting}.uem"
    if not path.is_file():
        raise InputError("missing UEM", path=path, fix=f"point --setup to a checkout of {SETUP_URL}")
    spans = read_uem(path)
    if set(spans) != {meeting}:
        raise InputError(f"expected spans of {meeting!r} only, found {sorted(spans)}", path=path)
    return spans[meeting]


def audio_path(ami_root: Path, meeting: str, mic: str) -> Path:
    return ami_root / meeting / "audio" / f"{meeting}.{MICS[mic]}.wav"


def prepare_ami(
    ami_root: str | os.PathLike,
    setup_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    mics: tuple[str, ...] = ("sdm", "ihm-mix"),
    annotations: str = "only_words",
) -> dict[str, dict[str, int]]:
    """Write ``out_dir/<mic>/<split>`` data directories; return the number of meetings per mic and split.

    Every input is read and every audio file checked before anything is written; missing audio raises one
    error with the count and the first few paths.
    """
    ami_root, setup_dir, out_dir = Path(ami_root).resolve(), Path(setup_dir), Path(out_dir)
    unknown = [mic for mic in mics if mic not in MICS]
    if unknown or annotations not in ANNOTATIONS:
        raise DiarizenLabError(
            f"unknown microphone {unknown} or annotations {annotations!r} "
            f"(choose among {sorted(MICS)} and {list(ANNOTATIONS)})"
        )
    references = {}
    for split in SPLITS:
        references[split] = {
            meeting: (read_meeting_rttm(setup_dir, annotations, split, meeting),
                      read_meeting_uem(setup_dir, split, meeting))
            for meeting in read_meetings(setup_dir, split)
        }
    missing = [
        audio_path(ami_root, meeting, mic)
        for mic in mics for split in SPLITS for meeting in references[split]
        if not audio_path(ami_root, meeting, mic).is_file()
    ]
    if missing:
        total = len(mics) * sum(len(meetings) for meetings in references.values())
        raise missing_files_error(
            "AMI audio", missing, total,
            f"download the {'/'.join(MICS[mic] for mic in mics)} streams from "
            f"https://groups.inf.ed.ac.uk/ami/download/ into {ami_root}, or choose other --mic settings",
        )
    counts: dict[str, dict[str, int]] = {}
    for mic in mics:
        counts[mic] = {}
        for split, meetings in references.items():
            write_data_dir(
                out_dir / mic / split,
                audio={meeting: audio_path(ami_root, meeting, mic) for meeting in meetings},
                turns=[turn for turns, _ in meetings.values() for turn in turns],
                spans={meeting: spans for meeting, (_, spans) in meetings.items()},
            )
            counts[mic][split] = len(meetings)
    return counts
