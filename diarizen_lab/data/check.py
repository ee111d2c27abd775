"""Validation and statistics of data directories (``diarizen-lab data check``)."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from diarizen_lab.data.datadir import Problem, Recording, scan_data_dir
from diarizen_lab.data.rttm import Turn, read_rttm
from diarizen_lab.errors import InputError


def speech_and_overlap(turns: list[Turn] | tuple[Turn, ...]) -> tuple[float, float]:
    """Seconds with at least one speaker, and with at least two different speakers."""
    events = []
    for speaker_turns in _by_speaker(turns).values():
        for start, end in _union(speaker_turns):
            events += [(start, 1), (end, -1)]
    events.sort()
    speech = overlap = 0.0
    active, previous = 0, 0.0
    for time, change in events:
        if active >= 1:
            speech += time - previous
        if active >= 2:
            overlap += time - previous
        active += change
        previous = time
    return speech, overlap


def _by_speaker(turns) -> dict[str, list[Turn]]:
    grouped = defaultdict(list)
    for turn in turns:
        grouped[turn.speaker].append(turn)
    return grouped


def _union(turns: list[Turn]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for turn in sorted(turns, key=lambda t: t.start):
        if merged and turn.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], turn.end)
        else:
            merged.append([turn.start, turn.end])
    return [(start, end) for start, end in merged]


@dataclass(frozen=True)
class Summary:
    """Statistics of the usable recordings of a data directory."""

    recordings: int
    hours: float
    min_speakers: int
    mean_speakers: float
    max_speakers: int
    overlap_percent: float
    """Overlapped speech (two or more speakers) as a percentage of speech, inside the UEM."""

    @classmethod
    def of(cls, recordings: list[Recording]) -> Summary:
        speakers = [len(r.speakers) for r in recordings] or [0]
        speech = overlap = 0.0
        for recording in recordings:
            s, o = speech_and_overlap(recording.turns)
            speech, overlap = speech + s, overlap + o
        return cls(
            recordings=len(recordings),
            hours=sum(end - start for r in recordings for start, end in r.spans) / 3600,
            min_speakers=min(speakers),
            mean_speakers=sum(speakers) / len(speakers),
            max_speakers=max(speakers),
            overlap_percent=100 * overlap / speech if speech else 0.0,
        )


@dataclass
class CheckReport:
    path: Path
    problems: list[Problem] = field(default_factory=list)
    summary: Summary | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def check_data_dir(
    path: str | os.PathLike, sample_rate: int = 16000, channel: int = 0, resample: bool = False
) -> CheckReport:
    """Validate a data directory for training at ``sample_rate`` from ``channel``.

    Errors: malformed files, audio that does not open, is empty or holds a NaN or infinite sample, recordings
    of ``rttm``/``uem`` missing from ``wav.scp``, UEM spans past the end of the audio, a missing channel,
    another sample rate (unless ``resample``). Warnings: turns clipped to the UEM, zero-duration turns,
    overlapping turns of one speaker, recordings without turns or without UEM span.
    """
    report = CheckReport(Path(path))
    try:
        recordings, problems = scan_data_dir(path)
    except InputError as error:
        report.problems.append(Problem("error", str(error)))
        return report
    report.problems += problems
    rttm = report.path / "rttm"
    scp = report.path / "wav.scp"
    for recording in recordings.values():
        if recording.num_channels <= channel:
            report.problems.append(Problem(
                "error", f"recording {recording.name!r} has {recording.num_channels} channels, no channel "
                f"{channel}", scp,
            ))
        if recording.sample_rate != sample_rate and not resample:
            report.problems.append(Problem(
                "error", f"recording {recording.name!r} is at {recording.sample_rate} Hz, not {sample_rate} Hz",
                scp, None, f"resample the audio (sox in.wav -r {sample_rate} out.wav) or set resample = true",
            ))
        if not recording.turns:
            report.problems.append(Problem("warning", f"recording {recording.name!r} has no turns", rttm))
        seconds = first_non_finite_sample(recording.path)
        if seconds is not None:
            report.problems.append(Problem(
                "error", f"recording {recording.name!r}: sample at {seconds:.3f} s of {recording.path} is NaN or "
                "infinite", scp, None, "re-export the audio: NaN samples make every loss and DER NaN",
            ))

    turns = read_rttm(rttm)
    zero = [t for t in turns if t.duration == 0]
    if zero:
        report.problems.append(Problem(
            "warning", f"{len(zero)} zero-duration turns (first on line {zero[0].line})", rttm,
        ))
    same_speaker = _same_speaker_overlaps(turns)
    if same_speaker:
        report.problems.append(Problem(
            "warning", f"{len(same_speaker)} turns overlap an earlier turn of the same speaker "
            f"(first on line {same_speaker[0].line}); they count once", rttm,
        ))
    report.summary = Summary.of(list(recordings.values()))
    return report


def first_non_finite_sample(path: Path, block_frames: int = 1 << 20) -> float | None:
    """The time (seconds) of the first NaN or infinite sample of a floating-point audio file, else ``None``
    (integer PCM cannot hold one, so only float files are read)."""
    info = sf.info(str(path))
    if info.subtype not in ("FLOAT", "DOUBLE"):
        return None
    position = 0
    for block in sf.blocks(str(path), blocksize=block_frames, dtype="float64", always_2d=True):
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            return (position + int(np.argmin(finite))) / info.samplerate
        position += len(block)
    return None


def _same_speaker_overlaps(turns: list[Turn]) -> list[Turn]:
    """Turns starting before the end of an earlier turn of the same speaker, in line order."""
    found = []
    grouped = defaultdict(list)
    for turn in turns:
        grouped[(turn.recording, turn.speaker)].append(turn)
    for group in grouped.values():
        latest_end = float("-inf")
        for turn in sorted(group, key=lambda t: (t.start, t.end)):
            if turn.start < latest_end:
                found.append(turn)
            latest_end = max(latest_end, turn.end)
    return sorted(found, key=lambda t: t.line or 0)


def format_report(reports: list[CheckReport]) -> str:
    """Problems (one line each) followed by a table of the summaries."""
    lines = []
    for report in reports:
        for problem in report.problems:
            lines.append(f"{problem.severity}: {problem}")
    header = ("data dir", "recordings", "hours", "speakers min/mean/max", "overlap %", "errors", "warnings")
    rows = [header]
    for report in reports:
        s = report.summary
        rows.append((
            str(report.path),
            str(s.recordings) if s else "-",
            f"{s.hours:.2f}" if s else "-",
            f"{s.min_speakers}/{s.mean_speakers:.1f}/{s.max_speakers}" if s else "-",
            f"{s.overlap_percent:.1f}" if s else "-",
            str(len(report.errors)),
            str(len(report.warnings)),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    if lines:
        lines.append("")
    for row in rows:
        lines.append("  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))
        ))
    return "\n".join(lines)
