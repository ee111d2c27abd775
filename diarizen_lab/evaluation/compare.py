"""Paired comparison of diarization systems scored on the same recordings.

Two systems scored against the same references (``diarizen-lab score -o``) differ by a corpus-level error rate
difference: candidate minus baseline, in points of percent (negative: the candidate makes fewer errors). How
much of it a test set of a few recordings can support is measured two ways:

- a **paired bootstrap over recordings**: recordings are drawn with replacement, the same draw for both
  systems, and each draw's difference is computed as the corpus-level rate, sum of errors over sum of scored
  speech (md-eval's definition), so long recordings weigh more than short ones. The 95 % interval is the 2.5th
  to 97.5th percentile of the resampled differences (percentile bootstrap).
- a **Wilcoxon signed-rank test** (``scipy.stats.wilcoxon``, two-sided) on the per-recording rates, each
  recording weighing the same: p is the probability of a sign-and-rank pattern at least this lopsided if neither
  system were better.

Both are given for DER and for each of its components (missed speech, false alarm, confusion), with the number
of recordings on which the candidate is better, worse or equal. The resampling is seeded: the same files and
seed give the same interval.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import scipy.stats

from diarizen_lab.errors import InputError
from diarizen_lab.evaluation.score import DiarizationErrors, ScoreReport, read_score_report

#: Name of each compared rate -> the attribute of :class:`DiarizationErrors` holding its seconds.
COMPONENTS = {"DER": "errors", "miss": "missed", "FA": "false_alarm", "confusion": "confusion"}
#: Two per-recording error times closer than this (seconds) are counted as equal.
TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """One rate of two systems: corpus-level values (percent), their difference and its significance."""

    metric: str
    baseline: float
    candidate: float
    difference: float
    interval: tuple[float, float]
    wilcoxon_p: float
    better: int
    worse: int
    same: int


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A candidate against the baseline: the settings of the test and one :class:`PairedDifference` per rate."""

    baseline: str
    candidate: str
    recordings: int
    collar: float
    skip_overlap: bool
    resamples: int
    seed: int
    level: float
    differences: list[PairedDifference]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def table(self) -> str:
        """A fixed-width text table, one row per rate."""
        overlap = "overlap skipped" if self.skip_overlap else "overlap scored"
        header = (
            f"{'metric':<9} {'baseline%':>9} {'candidate%':>10} {'diff':>7}  {f'{self.level:.0%} CI':<17}"
            f" {'Wilcoxon p':>10} {'better':>6} {'worse':>5} {'same':>4}"
        )
        rows = [
            f"{d.metric:<9} {d.baseline:9.2f} {d.candidate:10.2f} {d.difference:+7.2f}"
            f"  {f'[{d.interval[0]:+.2f}, {d.interval[1]:+.2f}]':<17} {d.wilcoxon_p:10.4f}"
            f" {d.better:6d} {d.worse:5d} {d.same:4d}"
            for d in self.differences
        ]
        return "\n".join([
            f"baseline:  {self.baseline}",
            f"candidate: {self.candidate}",
            f"{self.recordings} recordings, collar {self.collar:g} s on each side, {overlap}; paired bootstrap over"
            f" recordings ({self.resamples} resamples, seed {self.seed})",
            header,
            "-" * len(header),
            *rows,
            "diff = candidate - baseline (negative: fewer errors); better/worse/same: recordings",
        ])


def check_comparable(
    baseline: ScoreReport, candidate: ScoreReport, baseline_path: str | os.PathLike, candidate_path: str | os.PathLike
) -> None:
    """Refuse two reports not scored on the same recordings, references, UEM, collar and overlap setting.

    The scored speech of a recording depends on its reference, UEM, collar and overlap setting only (not on the
    hypothesis), so equal scored times per recording witness equal references.
    """
    fix = f"score both systems with the same -r, -u, --collar and --skip-overlap as {baseline_path}"
    if (baseline.collar, baseline.skip_overlap) != (candidate.collar, candidate.skip_overlap):
        raise InputError(
            f"scored with collar {candidate.collar:g} s, skip_overlap={candidate.skip_overlap}, but the baseline "
            f"with collar {baseline.collar:g} s, skip_overlap={baseline.skip_overlap}", path=candidate_path, fix=fix,
        )
    missing = sorted(set(baseline.recordings) - set(candidate.recordings))
    extra = sorted(set(candidate.recordings) - set(baseline.recordings))
    if missing or extra:
        where = f"lacks {len(missing)} of the baseline's, e.g. {missing[0]!r}" if missing else (
            f"has {len(extra)} the baseline lacks, e.g. {extra[0]!r}"
        )
        raise InputError(f"not the same recordings as the baseline: {where}", path=candidate_path, fix=fix)
    for uri, errors in baseline.recordings.items():
        other = candidate.recordings[uri].scored
        if abs(other - errors.scored) > TOLERANCE:
            raise InputError(
                f"recording {uri!r} has {other:.3f} s of scored speech, {errors.scored:.3f} s in the baseline: "
                "not the same references or UEM", path=candidate_path, fix=fix,
            )


def resample_indices(recordings: int, *, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, recordings)`` recording indices drawn with replacement, from a generator seeded ``seed``."""
    return np.random.default_rng(seed).integers(recordings, size=(resamples, recordings))


def bootstrap_interval(
    seconds: np.ndarray, scored: np.ndarray, indices: np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the corpus-level rate ``100 * sum(seconds) / sum(scored)`` over the resampled
    recordings ``indices`` (from :func:`resample_indices`); ``seconds`` may be a paired difference."""
    totals = scored[indices].sum(axis=1)
    kept = totals > 0  # a draw of recordings without scored speech has no rate
    rates = 100.0 * seconds[indices].sum(axis=1)[kept] / totals[kept]
    if rates.size == 0:
        return 0.0, 0.0
    low, high = np.quantile(rates, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def der_interval(
    report: ScoreReport, *, resamples: int = 10000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Bootstrap interval of one system's corpus-level DER (percent), resampling its recordings."""
    errors = [report.recordings[uri] for uri in sorted(report.recordings)]
    indices = resample_indices(len(errors), resamples=resamples, seed=seed)
    return bootstrap_interval(_seconds(errors, "errors"), _seconds(errors, "scored"), indices, level)


def compare(
    baseline: ScoreReport,
    candidate: ScoreReport,
    *,
    resamples: int = 10000,
    seed: int = 0,
    level: float = 0.95,
) -> list[PairedDifference]:
    """DER, miss, FA and confusion of ``candidate`` against ``baseline`` (see the module docstring).

    Both reports must pass :func:`check_comparable`.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    uris = sorted(baseline.recordings)
    base = [baseline.recordings[uri] for uri in uris]
    cand = [candidate.recordings[uri] for uri in uris]
    scored = _seconds(base, "scored")
    total = scored.sum()
    indices = resample_indices(len(uris), resamples=resamples, seed=seed)
    differences = []
    for metric, attribute in COMPONENTS.items():
        before, after = _seconds(base, attribute), _seconds(cand, attribute)
        change = after - before
        differences.append(PairedDifference(
            metric=metric,
            baseline=_rate(before.sum(), total),
            candidate=_rate(after.sum(), total),
            difference=_rate(change.sum(), total),
            interval=bootstrap_interval(change, scored, indices, level),
            wilcoxon_p=signed_rank_p(before, after, scored),
            better=int(np.sum(change < -TOLERANCE)),
            worse=int(np.sum(change > TOLERANCE)),
            same=int(np.sum(np.abs(change) <= TOLERANCE)),
        ))
    return differences


def compare_files(
    baseline: str | os.PathLike,
    candidate: str | os.PathLike,
    *,
    resamples: int = 10000,
    seed: int = 0,
    level: float = 0.95,
) -> Comparison:
    """Read two ``diarizen-lab score -o`` files, check that they are comparable and compare them."""
    base, cand = read_score_report(baseline), read_score_report(candidate)
    check_comparable(base, cand, baseline, candidate)
    return Comparison(
        baseline=str(baseline),
        candidate=str(candidate),
        recordings=len(base.recordings),
        collar=base.collar,
        skip_overlap=base.skip_overlap,
        resamples=resamples,
        seed=seed,
        level=level,
        differences=compare(base, cand, resamples=resamples, seed=seed, level=level),
    )


def signed_rank_p(before: np.ndarray, after: np.ndarray, scored: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value on per-recording rates (recordings without scored speech left
    out); 1 when no recording changes."""
    kept = scored > 0
    change = (after[kept] - before[kept]) / scored[kept]
    change[np.abs(after[kept] - before[kept]) <= TOLERANCE] = 0.0  # rounding noise is no change
    if not np.any(change):
        return 1.0
    return float(scipy.stats.wilcoxon(change).pvalue)


def _seconds(errors: list[DiarizationErrors], attribute: str) -> np.ndarray:
    return np.array([getattr(e, attribute) for e in errors], dtype=np.float64)


def _rate(seconds: float, scored: float) -> float:
    return 100.0 * seconds / scored if scored > 0 else 0.0
