"""Diarization error rate with NIST md-eval-22 semantics, and Jaccard error rate, computed by pyannote.metrics.

Conventions (those of md-eval-22 and dscore):

- ``collar`` is the no-score zone on *each side* of every reference turn boundary, in seconds (md-eval's
  ``-c``). pyannote.metrics' ``collar`` is the total width, so it receives ``2 * collar``.
- Speakers are mapped one to one by the Hungarian algorithm on their co-occurrence time inside the UEM, before
  collars and overlap regions are removed (md-eval computes its map the same way).
- ``skip_overlap`` removes the regions where two or more reference speakers talk (md-eval's ``-1``).
- Without a UEM entry, a recording is scored from its first to its last reference turn (md-eval's default).
- Overlapping turns of one speaker are merged (md-eval refuses such files); touching turns stay separate, so
  their shared boundary still gets its collar.

The error rate is (missed + false alarm + confusion) / scored speaker time, all in seconds of speaker time,
summed over recordings for the overall figure.

The Jaccard error rate (JER, DIHARD II) is pyannote.metrics' ``JaccardErrorRate`` on the same turns, UEM, collar
and overlap setting: each reference speaker gets ``(FA + MISS) / TOTAL`` against the system speaker paired with
it (TOTAL: the union of their speech; an unpaired reference speaker scores 1), and JER is the mean over
reference speakers, each speaker weighing the same whatever their speaking time. The overall JER is the mean
over the reference speakers of all recordings (as DIHARD's dscore does). System speakers left unpaired cost
nothing. Two differences from dscore: pyannote.metrics pairs speakers to maximise their co-occurrence time
(dscore minimises the summed per-speaker JER), after collars and overlap regions are removed; and a recording
with no reference speaker scores JER 100 % (dscore: 0 % when the system is silent too), though it adds no
speaker to the overall mean.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import (
    JER_SPEAKER_COUNT,
    JER_SPEAKER_ERROR,
    DiarizationErrorRate,
    JaccardErrorRate,
)
from pyannote.metrics.identification import IdentificationErrorRate

from diarizen_lab.data.rttm import read_rttm, to_annotations
from diarizen_lab.data.uem import read_uem
from diarizen_lab.errors import InputError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DiarizationErrors:
    """Error components in seconds of speaker time; ``scored`` is the reference speaker time (the denominator).

    ``speakers`` counts the reference speakers and ``jaccard_errors`` sums their Jaccard errors (each in
    [0, 1]), so that both add up over recordings like the DER components.
    """

    scored: float = 0.0
    missed: float = 0.0
    false_alarm: float = 0.0
    confusion: float = 0.0
    speakers: int = 0
    jaccard_errors: float = 0.0

    def __add__(self, other: DiarizationErrors) -> DiarizationErrors:
        return DiarizationErrors(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    @property
    def errors(self) -> float:
        return self.missed + self.false_alarm + self.confusion

    @property
    def der(self) -> float:
        """Diarization error rate in percent (md-eval's convention: 0 when nothing is scored and nothing is wrong)."""
        return self.percent(self.errors)

    @property
    def jer(self) -> float:
        """Jaccard error rate in percent: the mean Jaccard error of the reference speakers (100 without any,
        as pyannote.metrics)."""
        return 100.0 * self.jaccard_errors / self.speakers if self.speakers else 100.0

    def percent(self, seconds: float) -> float:
        if self.scored > 0:
            return 100.0 * seconds / self.scored
        return 0.0 if seconds == 0 else float("inf")

    def to_dict(self) -> dict[str, float]:
        return {
            "der": self.der,
            "missed": self.percent(self.missed),
            "false_alarm": self.percent(self.false_alarm),
            "confusion": self.percent(self.confusion),
            "scored_seconds": self.scored,
            "missed_seconds": self.missed,
            "false_alarm_seconds": self.false_alarm,
            "confusion_seconds": self.confusion,
            "jer": self.jer,
            "speakers": self.speakers,
            "jaccard_errors": self.jaccard_errors,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> DiarizationErrors:
        """The inverse of :meth:`to_dict` (a score file written before JER was added has no speakers)."""
        return cls(
            scored=float(data["scored_seconds"]),
            missed=float(data["missed_seconds"]),
            false_alarm=float(data["false_alarm_seconds"]),
            confusion=float(data["confusion_seconds"]),
            speakers=int(data.get("speakers", 0)),
            jaccard_errors=float(data.get("jaccard_errors", 0.0)),
        )


@dataclasses.dataclass
class ScoreReport:
    """Per-recording and overall errors, with the recordings that could not be matched."""

    collar: float
    skip_overlap: bool
    recordings: dict[str, DiarizationErrors]
    missing_hypotheses: list[str] = dataclasses.field(default_factory=list)
    unexpected_hypotheses: list[str] = dataclasses.field(default_factory=list)

    @property
    def overall(self) -> DiarizationErrors:
        return sum(self.recordings.values(), DiarizationErrors())

    def to_dict(self) -> dict:
        return {
            "collar": self.collar,
            "skip_overlap": self.skip_overlap,
            "overall": self.overall.to_dict(),
            "recordings": {uri: errors.to_dict() for uri, errors in self.recordings.items()},
            "missing_hypotheses": self.missing_hypotheses,
            "unexpected_hypotheses": self.unexpected_hypotheses,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ScoreReport:
        """The inverse of :meth:`to_dict`."""
        return cls(
            collar=float(data["collar"]),
            skip_overlap=bool(data["skip_overlap"]),
            recordings={uri: DiarizationErrors.from_dict(errors) for uri, errors in data["recordings"].items()},
            missing_hypotheses=list(data.get("missing_hypotheses", [])),
            unexpected_hypotheses=list(data.get("unexpected_hypotheses", [])),
        )

    def table(self) -> str:
        """A fixed-width text table: one row per recording, then the overall row."""
        width = max([len("OVERALL"), len("recording"), *map(len, self.recordings)])
        header = (
            f"{'recording':<{width}}  {'DER%':>7} {'miss%':>7} {'FA%':>7} {'conf%':>7} {'JER%':>7}"
            f"  {'scored(s)':>10} {'miss(s)':>9} {'FA(s)':>9} {'conf(s)':>9}"
        )

        def row(name: str, errors: DiarizationErrors) -> str:
            return (
                f"{name:<{width}}  {errors.der:7.2f} {errors.percent(errors.missed):7.2f}"
                f" {errors.percent(errors.false_alarm):7.2f} {errors.percent(errors.confusion):7.2f} {errors.jer:7.2f}"
                f"  {errors.scored:10.2f} {errors.missed:9.2f} {errors.false_alarm:9.2f} {errors.confusion:9.2f}"
            )

        rule = "-" * len(header)
        overlap = "overlap regions skipped" if self.skip_overlap else "overlap regions scored"
        return "\n".join([
            header,
            rule,
            *(row(name, errors) for name, errors in self.recordings.items()),
            rule,
            row("OVERALL", self.overall),
            f"collar {self.collar:g} s on each side of reference boundaries, {overlap}",
        ])


def score_recording(
    reference: Annotation,
    hypothesis: Annotation,
    uem: Timeline | None = None,
    *,
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> DiarizationErrors:
    """Errors of ``hypothesis`` against ``reference`` for one recording (see module docstring)."""
    if collar < 0:
        raise ValueError(f"collar must be >= 0 seconds, got {collar}")
    reference = merge_overlapping_turns(reference).rename_labels(generator="string")
    hypothesis = merge_overlapping_turns(hypothesis).rename_labels(generator="int")
    if uem is None:
        extent = reference.get_timeline().extent() if reference else None
        uem = Timeline([extent] if extent else [], uri=reference.uri)
    if not uem:
        return DiarizationErrors()
    mapping = DiarizationErrorRate().optimal_mapping(reference, hypothesis, uem=uem)
    mapped = hypothesis.rename_labels(mapping=mapping)  # unmapped speakers keep integer labels: never correct
    metric = IdentificationErrorRate(collar=2 * collar, skip_overlap=skip_overlap)
    detail = metric.compute_components(reference, mapped, uem=uem)
    jaccard = JaccardErrorRate(collar=2 * collar, skip_overlap=skip_overlap).compute_components(
        reference, hypothesis, uem=uem
    )
    return DiarizationErrors(
        scored=detail["total"],
        missed=detail["missed detection"],
        false_alarm=detail["false alarm"],
        confusion=detail["confusion"],
        speakers=round(jaccard[JER_SPEAKER_COUNT]),
        jaccard_errors=jaccard[JER_SPEAKER_ERROR],
    )


def score(
    references: Mapping[str, Annotation],
    hypotheses: Mapping[str, Annotation],
    uems: Mapping[str, Timeline] | None = None,
    *,
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> ScoreReport:
    """Score every reference recording.

    A reference recording without hypothesis is scored as all missed; hypothesis recordings absent from the
    references are ignored. Both are reported (in the result and as logged warnings).
    """
    report = ScoreReport(collar=collar, skip_overlap=skip_overlap, recordings={})
    for uri in sorted(references):
        hypothesis = hypotheses.get(uri)
        if hypothesis is None:
            report.missing_hypotheses.append(uri)
            hypothesis = Annotation(uri=uri)
        uem = None
        if uems is not None:
            uem = uems.get(uri)
            if uem is None:
                logger.warning("%s has no UEM entry: scoring it from its first to its last reference turn", uri)
        report.recordings[uri] = score_recording(
            references[uri], hypothesis, uem, collar=collar, skip_overlap=skip_overlap
        )
    report.unexpected_hypotheses = sorted(set(hypotheses) - set(references))
    if report.missing_hypotheses:
        logger.warning(
            "no hypothesis for %d reference recording(s), counted as all missed: %s",
            len(report.missing_hypotheses), _abbreviate(report.missing_hypotheses),
        )
    if report.unexpected_hypotheses:
        logger.warning(
            "%d hypothesis recording(s) are not in the reference and were ignored: %s",
            len(report.unexpected_hypotheses), _abbreviate(report.unexpected_hypotheses),
        )
    return report


def score_files(
    reference: str | os.PathLike,
    hypothesis: str | os.PathLike,
    uem: str | os.PathLike | None = None,
    *,
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> ScoreReport:
    """Score RTTM files: ``hypothesis`` is one RTTM file or a directory whose ``*.rttm`` files are all read."""
    for what, path in (("reference", reference), ("hypothesis", hypothesis), ("UEM", uem)):
        if path is not None and not Path(path).exists():
            raise InputError(f"no such {what} file", path=path)
    references = to_annotations(read_rttm(reference))
    hypotheses = read_hypotheses(hypothesis)
    uems = None if uem is None else read_uems(uem)
    return score(references, hypotheses, uems, collar=collar, skip_overlap=skip_overlap)


def write_score_report(path: str | os.PathLike, report: ScoreReport) -> None:
    """Write ``report`` as the JSON file that :func:`read_score_report` reads (atomically)."""
    from diarizen_lab.utils.atomic import atomic_open

    with atomic_open(path) as f:
        json.dump(report.to_dict(), f, indent=2)


def read_score_report(path: str | os.PathLike) -> ScoreReport:
    """Read a JSON report written by ``diarizen-lab score -o``."""
    path = Path(path)
    try:
        return ScoreReport.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise InputError("score file not found", path=path, fix="run `diarizen-lab score ... -o FILE` first") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(
            f"not a score report ({error!r})", path=path, fix="pass JSON written by `diarizen-lab score -o`"
        ) from None


def read_hypotheses(path: str | os.PathLike) -> dict[str, Annotation]:
    """Read one RTTM file, or every ``*.rttm`` file of a directory (a recording may not span two files)."""
    path = Path(path)
    if not path.is_dir():
        return to_annotations(read_rttm(path))
    files = sorted(path.glob("*.rttm"))
    if not files:
        raise InputError(
            "no *.rttm file in this directory", path=path, fix="pass the directory the RTTMs were written to"
        )
    hypotheses: dict[str, Annotation] = {}
    origin: dict[str, Path] = {}
    for file in files:
        for uri, annotation in to_annotations(read_rttm(file)).items():
            if uri in hypotheses:
                raise InputError(
                    f"recording {uri!r} is also in {origin[uri]}",
                    path=file, fix="write each recording to a single RTTM file",
                )
            hypotheses[uri], origin[uri] = annotation, file
    return hypotheses


def read_uems(path: str | os.PathLike) -> dict[str, Timeline]:
    """Read a UEM file as one ``Timeline`` of scored spans per recording."""
    return {
        uri: Timeline([Segment(start, end) for start, end in spans], uri=uri) for uri, spans in read_uem(path).items()
    }


def merge_overlapping_turns(annotation: Annotation) -> Annotation:
    """Merge overlapping turns of the same speaker (touching turns are kept apart)."""
    merged = Annotation(uri=annotation.uri)
    for label in annotation.labels():
        current: Segment | None = None
        for segment in annotation.label_timeline(label, copy=False):
            if current is not None and segment.start < current.end:
                current = Segment(current.start, max(current.end, segment.end))
                continue
            if current is not None:
                merged[current, label] = label
            current = segment
        if current is not None:
            merged[current, label] = label
    return merged


def _abbreviate(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"
