"""AliMeeting (OpenSLR 119), far-field: 8-channel array recordings with TextGrid transcripts.

Input layout (as extracted from the OpenSLR archives): ``ROOT/{Train,Eval,Test}_Ali/<Name>_Ali_far/`` or
``ROOT/<Name>_Ali_far/``, each with ``audio_dir/<session>_MS<array>.wav`` and
``textgrid_dir/<session>.TextGrid``. Output: ``OUT/{train,dev,test}`` (Train, Eval, Test; absent ones are
skipped) with the recording named after the audio file, one RTTM turn per speech interval (tier = speaker)
and a whole-file UEM; train on ``channel = 0``.
"""

from __future__ import annotations

import os
from pathlib import Path

from diarizen_lab.data.corpora import missing_files_error
from diarizen_lab.data.corpora.textgrid import write_textgrid_data_dir
from diarizen_lab.errors import DiarizenLabError

SPLITS = {"train": "Train", "dev": "Eval", "test": "Test"}
DOWNLOAD = "download and extract AliMeeting from https://www.openslr.org/119/"


def far_field_dir(root: Path, name: str) -> Path | None:
    for candidate in (root / f"{name}_Ali" / f"{name}_Ali_far", root / f"{name}_Ali_far"):
        if candidate.is_dir():
            return candidate
    return None


def prepare_alimeeting(root: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, int]:
    """Write ``out_dir/{train,dev,test}``; return the number of recordings per split."""
    root, out_dir = Path(root).resolve(), Path(out_dir)
    plan: dict[str, dict[str, tuple[Path, Path]]] = {}
    missing: list[Path] = []
    total = 0
    for split, name in SPLITS.items():
        directory = far_field_dir(root, name)
        if directory is None:
            continue
        sessions = {}
        for audio in sorted((directory / "audio_dir").glob("*_MS*.wav")):
            textgrid = directory / "textgrid_dir" / f"{audio.stem.rsplit('_MS', 1)[0]}.TextGrid"
            total += 1
            if textgrid.is_file():
                sessions[audio.stem] = (audio, textgrid)
            else:
                missing.append(textgrid)
        if sessions:
            plan[split] = sessions
    if missing:
        raise missing_files_error("AliMeeting TextGrid", missing, total, DOWNLOAD)
    if not plan:
        raise DiarizenLabError(
            f"{root} has no far-field AliMeeting data (expected e.g. Eval_Ali/Eval_Ali_far/audio_dir/*_MS*.wav) "
            f"({DOWNLOAD})"
        )
    for split, sessions in plan.items():
        write_textgrid_data_dir(out_dir / split, sessions)
    return {split: len(sessions) for split, sessions in plan.items()}
