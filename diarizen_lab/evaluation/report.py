"""An experiment's results: a markdown table and a DER-breakdown chart from ``diarizen-lab score -o`` JSON files."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from diarizen_lab.errors import InputError
from diarizen_lab.utils.atomic import atomic_open, atomic_path


@dataclasses.dataclass(frozen=True)
class ScoredSet:
    """The overall errors of one test set at one collar / overlap setting."""

    name: str
    collar: float
    skip_overlap: bool
    der: float
    missed: float
    false_alarm: float
    confusion: float
    scored_seconds: float
    recordings: int

    @property
    def condition(self) -> str:
        return f"collar {self.collar:g}" + (", overlap skipped" if self.skip_overlap else "")


def read_score(name: str, path: str | os.PathLike) -> ScoredSet:
    """Read one score JSON written by ``diarizen-lab score -o``."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
        overall = report["overall"]
        return ScoredSet(
            name=name,
            collar=float(report["collar"]),
            skip_overlap=bool(report["skip_overlap"]),
            der=float(overall["der"]),
            missed=float(overall["missed"]),
            false_alarm=float(overall["false_alarm"]),
            confusion=float(overall["confusion"]),
            scored_seconds=float(overall["scored_seconds"]),
            recordings=len(report["recordings"]),
        )
    except FileNotFoundError:
        raise InputError("score file not found", path=path, fix="run `diarizen-lab score ... -o FILE` first") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"not a score report ({error!r})", path=path, fix="pass JSON written by `diarizen-lab score -o`") from None


def markdown_table(title: str, results: list[ScoredSet]) -> str:
    """A markdown table with one row per (set, condition)."""
    lines = [
        f"# {title}",
        "",
        "| test set | condition | recordings | scored (h) | DER % | miss % | FA % | confusion % |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result.name} | {result.condition} | {result.recordings} | {result.scored_seconds / 3600:.2f}"
            f" | {result.der:.2f} | {result.missed:.2f} | {result.false_alarm:.2f} | {result.confusion:.2f} |"
        )
    lines += ["", "DER as NIST md-eval-22 computes it; collars are per side of each reference boundary (seconds)."]
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


def write_report(title: str, results: list[ScoredSet], markdown: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``markdown`` and a PNG beside it (same name, ``.png``); return both paths."""
    if not results:
        raise InputError("no score files given", path=markdown)
    markdown = Path(markdown)
    with atomic_open(markdown) as f:
        f.write(markdown_table(title, results))
    chart = markdown.with_suffix(".png")
    plot_breakdown(title, results, chart)
    return markdown, chart
