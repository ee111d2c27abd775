"""``diarizen-lab compare``: is a DER difference between systems scored on the same recordings significant?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DESCRIPTION = """\
Compare systems scored on the same recordings (JSON files from `diarizen-lab score -o`): for DER, missed
speech, false alarm and confusion, the corpus-level difference candidate - baseline (points of percent), its
95 % interval from a paired bootstrap over recordings (each draw's rate is sum of errors / sum of scored speech,
as md-eval), a two-sided Wilcoxon signed-rank p-value on the per-recording rates, and the number of recordings
on which the candidate is better / worse / equal. The files must share recordings, references, UEM, collar and
overlap setting.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="paired significance of DER differences between systems (bootstrap CI, Wilcoxon test)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("baseline", type=Path, metavar="BASELINE.json", help="score file of the baseline system")
    parser.add_argument(
        "candidates", type=Path, nargs="+", metavar="CANDIDATE.json", help="score file(s) of the system(s) to compare"
    )
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--json", action="store_true", help="print the comparisons as JSON instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diarizen_lab.errors import DiarizenLabError
    from diarizen_lab.evaluation.compare import compare_files

    if args.resamples < 1:
        raise DiarizenLabError(f"--resamples must be >= 1, got {args.resamples}")
    comparisons = [
        compare_files(args.baseline, candidate, resamples=args.resamples, seed=args.seed)
        for candidate in args.candidates
    ]
    if args.json:
        print(json.dumps([comparison.to_dict() for comparison in comparisons], indent=2))
    else:
        print("\n\n".join(comparison.table() for comparison in comparisons))
    return 0
