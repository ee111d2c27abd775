"""``diarizen-lab average``: average the weights of epochs chosen from an experiment's metrics.jsonl."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Average model checkpoints of one experiment. Epochs are chosen from exp/<name>/metrics.jsonl (never from logs):
  best    the N epochs with the best metric value
  last    the N most recent validated epochs
  window  the N consecutive validated epochs with the best mean metric
Epochs whose value is not finite (a diverged validation) are skipped and reported; ties go to the later epoch,
as for checkpoint retention ([checkpoint] keep_best_n), so the epochs chosen by best are kept.
Whether lower or higher is better is inferred from the metric name (der, loss, error: lower) unless
--metric-mode says otherwise. The epochs, their metric values and the modes are stored in the output's "meta".
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "average",
        help="average checkpoints chosen by a validation metric (best, last or window of N epochs)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-e", "--exp-dir", type=Path, required=True, help="experiment directory exp/<name>")
    parser.add_argument(
        "--metric", default="val/der", help="metrics.jsonl key used to choose epochs (default: val/der)"
    )
    parser.add_argument(
        "--mode", choices=["best", "last", "window"], default="best", help="epoch selection (default: best)"
    )
    parser.add_argument("-n", "--num-epochs", type=int, default=5, help="number of epochs to average (default: 5)")
    parser.add_argument(
        "--metric-mode", choices=["min", "max"], default=None,
        help="whether lower (min) or higher (max) is better (default: inferred from the metric name)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="output model.pt (default: <exp-dir>/avg_<mode>_<N>.pt)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diarizen_lab.training.run_dir import average_checkpoints

    output = args.output or args.exp_dir / f"avg_{args.mode}_{args.num_epochs}.pt"
    record = average_checkpoints(
        args.exp_dir, output, metric=args.metric, mode=args.mode, n=args.num_epochs, metric_mode=args.metric_mode
    )
    print_record(record, output)
    return 0


def print_record(record: dict[str, Any], output: Path) -> None:
    """What an averaging chose: its epochs and their values, the epochs skipped, and the file written."""
    print(f"averaged {len(record['epochs'])} epochs ({record['mode']}, {record['metric']} {record['metric_mode']}):")
    for epoch, value in zip(record["epochs"], record["values"]):
        print(f"  epoch {epoch:4d}  {record['metric']} = {value:.6g}")
    if record["skipped_nonfinite"]:
        skipped = ", ".join(map(str, record["skipped_nonfinite"]))
        print(f"skipped epoch(s) {skipped}: non-finite {record['metric']}")
    print(f"wrote {output}")
