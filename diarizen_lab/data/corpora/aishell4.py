"""AISHELL-4 (OpenSLR 111): 8-channel meeting recordings with TextGrid transcripts.

Input layout: ``ROOT/{train_L,train_M,train_S,test}/{wav/<session>.flac,TextGrid/<session>.TextGrid}``
(subsets that are absent are skipped). Output: ``OUT/train`` (train_L + train_M + train_S) and ``OUT/test``,
each ``{wav.scp,rttm,uem}`` with the multi-channel FLAC files (train on ``channel = 0``), one RTTM turn per
speech interval (tier = speaker) and a whole-file UEM.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from diarizen_lab.data.corpora import missing_files_error
from diarizen_lab.data.corpora.textgrid import write_textgrid_data_dir
from diarizen_lab.errors import DiarizenLabError

logger = logging.getLogger(__name__)

SPLITS = {"train": ("train_L", "train_M", "train_S"), "test": ("test",)}
BROKEN_SESSIONS = frozenset({"20200622_M_R002S07C01", "20200710_M_R002S06C01"})
"""Sessions whose annotations do not match their audio; they are reported and skipped."""
DOWNLOAD = "download and extract AISHELL-4 from https://www.openslr.org/111/"


def prepare_aishell4(root: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, int]:
    """Write ``out_dir/{train,test}``; return the number of sessions per split."""
    root, out_dir = Path(root).resolve(), Path(out_dir)
    found = {split: [root / subset for subset in subsets if (root / subset).is_dir()]
             for split, subsets in SPLITS.items()}
    if not any(found.values()):
        raise DiarizenLabError(f"{root} has none of {[s for v in SPLITS.values() for s in v]} ({DOWNLOAD})")
    plan: dict[str, dict[str, tuple[Path, Path]]] = {}
    missing: list[Path] = []
    total = 0
    for split, subsets in found.items():
        sessions = {}
        for subset in subsets:
            audio = {path.stem: path for path in (subset / "wav").glob("*.flac")}
            textgrids = {path.stem: path for path in (subset / "TextGrid").glob("*.TextGrid")}
            total += 2 * len(audio.keys() | textgrids.keys())
            missing += [subset / "TextGrid" / f"{name}.TextGrid" for name in sorted(audio.keys() - textgrids)]
            missing += [subset / "wav" / f"{name}.flac" for name in sorted(textgrids.keys() - audio)]
            for name in sorted(audio.keys() & textgrids.keys()):
                if name in BROKEN_SESSIONS:
                    logger.warning("skipping AISHELL-4 session %s (%s): its annotation is broken", name, subset)
                    continue
                sessions[name] = (audio[name], textgrids[name])
        if sessions:
            plan[split] = sessions
    if missing:
        raise missing_files_error("AISHELL-4", missing, total, DOWNLOAD)
    for split, sessions in plan.items():
        write_textgrid_data_dir(out_dir / split, sessions)
    return {split: len(sessions) for split, sessions in plan.items()}
