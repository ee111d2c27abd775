"""What a run reports: ``metrics.jsonl``, TensorBoard events under ``tb/`` and ``curves.png``.

``metrics.jsonl`` has one JSON object per validation: ``epoch``, ``step``, every ``train/...``, ``val/...``
and ``lr/...`` value, and wall-clock fields under ``time/`` (the only fields that differ between an
uninterrupted run and a resumed one). Each row is appended, flushed and fsynced; on resume the file is
rewritten (atomically) with only the rows up to the resumed epoch, which also drops a row cut short by a crash.
Only the main process writes; :mod:`~diarizen_lab.training.run_dir` reads.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from diarizen_lab.training.run_dir import METRICS_FILE, read_metrics
from diarizen_lab.utils.atomic import atomic_open, atomic_path

CURVES_FILE = "curves.png"
TIME_PREFIX = "time/"


class RunLog:
    """Writes the reports of one run into ``run_dir`` (a no-op on processes other than the main one)."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        self._writer = None

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    def start(self, resumed_epoch: int | None, resumed_step: int) -> None:
        """Open the logs; when resuming, keep only the rows (and TensorBoard events) up to the resumed point."""
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resumed_epoch is None:
            self.rows = []
            with atomic_open(self.metrics_path, "w"):
                pass
            purge_step = None
        else:
            self.rows = [row for row in read_metrics(self.metrics_path) if row["epoch"] <= resumed_epoch]
            with atomic_open(self.metrics_path, "w") as f:
                f.writelines(_json_line(row) for row in self.rows)
            purge_step = resumed_step + 1
        self._writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log scalars to TensorBoard only (e.g. training loss every few updates)."""
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(name, value, global_step=step)

    def append(self, row: dict[str, Any]) -> None:
        """Record one validation row: metrics.jsonl, TensorBoard, and a refreshed curves.png."""
        if not self.enabled:
            return
        with open(self.metrics_path, "a") as f:
            f.write(_json_line(row))
            f.flush()
            os.fsync(f.fileno())
        self.rows.append(row)
        self.scalars({k: v for k, v in row.items() if k not in ("epoch", "step")}, step=row["step"])
        self._writer.flush()
        self._plot()

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = [
            ("loss", [key for key in ("train/loss", "val/loss") if any(key in row for row in self.rows)]),
            ("validation DER", [k for k in ("val/der", "val/miss", "val/fa", "val/confusion") if k in self.rows[-1]]),
        ]
        figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
        for axis, (title, keys) in zip(axes[0], panels):
            for key in keys:
                points = [(row["epoch"], row[key]) for row in self.rows if _is_number(row.get(key))]
                if points:
                    axis.plot(*zip(*points), marker="o", label=key)
            axis.set_title(title)
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
            if keys:
                axis.legend()
        figure.tight_layout()
        with atomic_path(self.run_dir / CURVES_FILE) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        plt.close(figure)


def _json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, allow_nan=True) + "\n"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
