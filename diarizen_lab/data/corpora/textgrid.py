"""Praat TextGrid files (text formats, long and short) and their conversion to speaker turns.

A Praat text file is a flat sequence of numbers, double-quoted strings (``""`` inside is one quote) and
flags (``<exists>``); everything else -- labels such as ``xmin =``, ``item [1]:`` indices, ``!`` comments --
is ignored. That is why one reader handles both the long and the short format. A TextGrid is::

    "ooTextFile" "TextGrid" xmin xmax <exists> number_of_tiers
    per tier:  "IntervalTier" name xmin xmax n  then n times: xmin xmax text
           or  "TextTier"     name xmin xmax n  then n times: time mark

Files are UTF-8, or UTF-16 with a byte-order mark (what Praat writes when a label is not ASCII).
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass
from pathlib import Path

from diarizen_lab.data.datadir import write_data_dir
from diarizen_lab.data.rttm import Turn
from diarizen_lab.errors import InputError

NON_SPEECH_LABELS = frozenset({"", "<%>", "<$>"})
"""Interval texts that are not speech (AISHELL-4/AliMeeting mark noise and other events this way)."""

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"]|"")*")
    | (?P<flag><[A-Za-z]+>)
    | (?P<index>\[[^\]\n]*\])
    | (?P<comment>![^\n]*)
    | (?P<number>(?<!\S)[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\S*
    | \S+
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Interval:
    """A labeled interval (a point of a TextTier has ``start == end``)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Tier:
    name: str
    kind: str
    """``"IntervalTier"`` or ``"TextTier"``."""
    intervals: list[Interval]


@dataclass(frozen=True)
class TextGrid:
    start: float
    end: float
    tiers: list[Tier]


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(
            f"not UTF-8 or UTF-16 text ({error.reason} at byte {error.start})", path=path,
            fix="save the TextGrid from Praat as a text file",
        ) from None


class _Reader:
    """Reads the values of a Praat text file one by one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = _decode(path)
        self.values = [
            (match.lastgroup, match.group(match.lastgroup), match.start())
            for match in _TOKEN.finditer(self.text)
            if match.lastgroup in ("string", "flag", "number")
        ]
        self.position = 0

    def _next(self, kind: str, what: str) -> str:
        if self.position >= len(self.values):
            raise InputError(f"file ends where {what} was expected", path=self.path)
        found_kind, value, offset = self.values[self.position]
        if found_kind != kind:
            raise InputError(
                f"expected {what}, found {value[:40]!r}", path=self.path, line=self.text.count("\n", 0, offset) + 1
            )
        self.position += 1
        return value

    def number(self, what: str) -> float:
        return float(self._next("number", what))

    def count(self, what: str) -> int:
        value = self.number(what)
        if value < 0 or value != int(value):
            raise InputError(f"{what} is {value}, not a count", path=self.path)
        return int(value)

    def string(self, what: str) -> str:
        return self._next("string", what)[1:-1].replace('""', '"')

    def flag(self, what: str) -> str:
        return self._next("flag", what)


def read_textgrid(path: str | os.PathLike) -> TextGrid:
    """Parse a TextGrid in the long or short text format.

    Raises :class:`InputError` naming the file (and line) for a file that is not a text TextGrid, a missing
    or misplaced value, an unknown tier class, or an interval that ends before it starts.
    """
    path = Path(path)
    reader = _Reader(path)
    if not reader.values or reader.values[0][0] != "string" or not reader.string("file type").startswith(
        "ooTextFile"
    ):
        raise InputError("not a Praat text file (no 'ooTextFile' header)", path=path,
                         fix="save the TextGrid from Praat as a text file, not binary")
    if reader.string("object class") != "TextGrid":
        raise InputError("not a TextGrid (object class is not 'TextGrid')", path=path)
    start, end = reader.number("xmin"), reader.number("xmax")
    tiers = []
    if reader.flag("tiers flag") == "<exists>":
        for _ in range(reader.count("number of tiers")):
            kind = reader.string("tier class")
            if kind not in ("IntervalTier", "TextTier"):
                raise InputError(f"unknown tier class {kind!r}", path=path)
            name = reader.string("tier name")
            reader.number("tier xmin")
            reader.number("tier xmax")
            intervals = []
            for _ in range(reader.count("number of intervals")):
                if kind == "IntervalTier":
                    first, last = reader.number("interval xmin"), reader.number("interval xmax")
                    if last < first:
                        raise InputError(
                            f"interval of tier {name!r} ends ({last}) before it starts ({first})", path=path,
                        )
                    intervals.append(Interval(first, last, reader.string("interval text")))
                else:
                    time = reader.number("point time")
                    intervals.append(Interval(time, time, reader.string("point mark")))
            tiers.append(Tier(name, kind, intervals))
    return TextGrid(start, end, tiers)


def textgrid_turns(textgrid: TextGrid, recording: str) -> list[Turn]:
    """One turn per speech interval of every interval tier; the tier name is the speaker.

    Intervals whose stripped text is in :data:`NON_SPEECH_LABELS`, and zero-length intervals, are skipped.
    Whitespace in a tier name becomes ``_`` (RTTM fields cannot hold spaces); an unnamed tier ``n``
    (1-based) is speaker ``tier<n>``.
    """
    turns = []
    for number, tier in enumerate(textgrid.tiers, start=1):
        if tier.kind != "IntervalTier":
            continue
        speaker = "_".join(tier.name.split()) or f"tier{number}"
        turns += [
            Turn(recording, interval.start, interval.end, speaker)
            for interval in tier.intervals
            if interval.text.strip() not in NON_SPEECH_LABELS and interval.end > interval.start
        ]
    return turns


def write_textgrid_data_dir(out_dir: str | os.PathLike, sessions: dict[str, tuple[Path, Path]]) -> None:
    """Write a data directory for ``{recording: (audio, textgrid)}``, each recording used whole."""
    import soundfile as sf

    turns, spans = [], {}
    for recording, (audio, textgrid) in sessions.items():
        turns += textgrid_turns(read_textgrid(textgrid), recording)
        try:
            info = sf.info(str(audio))
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            raise InputError(f"cannot open audio: {error}", path=audio) from None
        spans[recording] = [(0.0, info.frames / info.samplerate)]
    write_data_dir(out_dir, {name: audio for name, (audio, _) in sessions.items()}, turns, spans)

