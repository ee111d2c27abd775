"""``diarizen-lab score``: diarization error rate of RTTM hypotheses, matching NIST md-eval-22."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

DESCRIPTION = """\
Score RTTM hypotheses against RTTM references with pyannote.metrics, using NIST md-eval-22 conventions.

--collar is the no-score zone on EACH SIDE of every reference boundary, in seconds, as md-eval's -c and
dscore's --collar (0.25 means +-0.25 s; pyannote.metrics' own `collar` argument is the total width, 0.5 here).
Speakers are mapped one to one (Hungarian) on their overlap inside the UEM. A reference recording with no
hypothesis counts as all missed; hypothesis recordings absent from the reference are ignored (both warned).
Without a UEM entry a recording is scored from its first to its last reference turn.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="diarization error rate of RTTM hypotheses (md-eval-22 conventions)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-r", "--reference", type=Path, required=True, help="reference RTTM file")
    parser.add_argument(
        "-s", "--hypothesis", type=Path, required=True, help="hypothesis RTTM file, or a directory of *.rttm files"
    )
    parser.add_argument("-u", "--uem", type=Path, default=None, help="UEM file: the scored region of each recording")
    parser.add_argument(
        "--collar", type=float, default=0.0,
        help="no-score collar in seconds on EACH side of reference boundaries, like md-eval -c (default: 0)",
    )
    parser.add_argument(
        "--skip-overlap", action="store_true", help="do not score regions where reference speakers overlap"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="also write the JSON report to this file (atomically)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diarizen_lab.errors import DiarizenLabError
    from diarizen_lab.evaluation.score import score_files, write_score_report

    if args.collar < 0:
        raise DiarizenLabError(f"--collar must be >= 0 seconds, got {args.collar:g}")
    logging.basicConfig(format="diarizen-lab: warning: %(message)s", level=logging.WARNING)
    report = score_files(
        args.reference, args.hypothesis, args.uem, collar=args.collar, skip_overlap=args.skip_overlap
    )
    if args.output is not None:
        write_score_report(args.output, report)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table())
    return 0
