"""An experiment's results: a markdown table and a DER-breakdown chart from ``diarizen-lab score -o`` JSON files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.evaluation.compare import PairedDifference, check_comparable, compare, der_interval
from diarizen_lab.evaluation.score import ScoreReport, read_score_report
from diarizen_lab.utils.atomic import atomic_open, atomic_path


#: Bootstrap settings of the report's intervals (:mod:`diarizen_lab.evaluation.compare`).
RESAMPLES, SEED = 10000, 0


@dataclasses.dataclass(frozen=True)
class ScoredSet:
    """One score file of a test set at one collar / overlap setting, and the bootstrap interval of its DER."""

    name: str
    path: Path
    report: ScoreReport
    interval: tuple[float, float]

    @property
    def condition(self) -> str:
        return f"collar {self.collar:g}" + (", overlap skipped" if self.skip_overlap else "")

    @property
    def collar(self) -> float:
        return self.report.collar

    @property
    def skip_overlap(self) -> bool:
        return self.report.skip_overlap

    @property
    def recordings(self) -> int:
        return len(self.report.recordings)

    @property
    def scored_seconds(self) -> float:
        return self.report.overall.scored

    @property
    def der(self) -> float:
        return self.report.overall.der

    @property
    def missed(self) -> float:
        return self.report.overall.percent(self.report.overall.missed)

    @property
    def false_alarm(self) -> float:
        return self.report.overall.percent(self.report.overall.false_alarm)

    @property
    def confusion(self) -> float:
        return self.report.overall.percent(self.report.overall.confusion)

    @property
    def jer(self) -> float | None:
        """Overall JER in percent; ``None`` for a score file without reference speakers (or written before JER)."""
        return self.report.overall.jer if self.report.overall.speakers else None


def read_score(name: str, path: str | os.PathLike) -> ScoredSet:
    """Read one score JSON written by ``diarizen-lab score -o``."""
    report = read_score_report(path)
    return ScoredSet(name, Path(path), report, der_interval(report, resamples=RESAMPLES, seed=SEED))


def paired_difference(result: ScoredSet, results: list[ScoredSet], baseline: str) -> PairedDifference | None:
    """DER of ``result`` against the row of set ``baseline`` at the same condition on the same recordings
    (``None`` when there is no such row, or ``result`` is that row)."""
    for base in results:
        same_recordings = set(base.report.recordings) == set(result.report.recordings)
        if base.name == baseline and base.condition == result.condition and same_recordings:
            if base is result:
                return None
            check_comparable(base.report, result.report, base.path, result.path)
            return compare(base.report, result.report, resamples=RESAMPLES, seed=SEED)[0]
    return None


def markdown_table(title: str, results: list[ScoredSet], baseline: str | None = None) -> str:
    """A markdown table with one row per (set, condition); with ``baseline``, the paired DER difference."""
    if baseline is not None and baseline not in {result.name for result in results}:
        raise DiarizenLabError(f"--baseline {baseline!r} is none of the sets ({', '.join(r.name for r in results)})")
    extra = f" ΔDER vs {baseline} [95 % CI] |" if baseline else ""
    lines = [
        f"# {title}",
        "",
        "| test set | condition | recordings | scored (h) | DER % | DER 95 % CI | miss % | FA % | confusion % | JER % |"
        + extra,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if baseline else ""),
    ]
    for result in results:
        jer = "–" if result.jer is None else f"{result.jer:.2f}"
        row = (
            f"| {result.name} | {result.condition} | {result.recordings} | {result.scored_seconds / 3600:.2f}"
            f" | {result.der:.2f} | [{result.interval[0]:.2f}, {result.interval[1]:.2f}] | {result.missed:.2f}"
            f" | {result.false_alarm:.2f} | {result.confusion:.2f} | {jer} |"
        )
        if baseline:
            paired = paired_difference(result, results, baseline)
            row += " – |" if paired is None else (
                f" {paired.difference:+.2f} [{paired.interval[0]:+.2f}, {paired.interval[1]:+.2f}] |"
            )
        lines.append(row)
    lines += [
        "",
        "DER as NIST md-eval-22 computes it; collars are per side of each reference boundary (seconds).",
        f"Intervals: bootstrap over recordings of the corpus-level DER ({RESAMPLES} resamples, seed {SEED}; "
        "paired for ΔDER, see `diarizen-lab compare`).",
    ]
    return "\n".join(lines) + "\n"


def plot_breakdown(title: str, results: list[ScoredSet], path: str | os.PathLike) -> None:
    """Stacked bars of miss / false alarm / confusion for each (set, condition), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.name}\n{r.condition}" for r in results]
    figure, axes = plt.subplots(figsize=(max(4.0, 1.6 * len(results) + 1.5), 4.0))
    bottom = [0.0] * len(results)
    for component, color in (("missed", "#4477aa"), ("false_alarm", "#ee6677"), ("confusion", "#ccbb44")):
        values = [getattr(r, component) for r in results]
        axes.bar(labels, values, bottom=bottom, color=color, label=component.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values)]
    for index, result in enumerate(results):
        axes.text(index, bottom[index], f"{result.der:.1f}", ha="center", va="bottom", fontsize=9)
    axes.set_ylabel("% of scored speech")
    axes.set_title(f"{title}: DER breakdown")
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def write_report(
    title: str, results: list[ScoredSet], markdown: str | os.PathLike, baseline: str | None = None
) -> tuple[Path, Path]:
    """Write ``markdown`` and a PNG beside it (same name, ``.png``); return both paths."""
    if not results:
        raise InputError("no score files given", path=markdown)
    markdown = Path(markdown)
    table = markdown_table(title, results, baseline)
    with atomic_open(markdown) as f:
        f.write(table)
    chart = markdown.with_suffix(".png")
    plot_breakdown(title, results, chart)
    return markdown, chart
