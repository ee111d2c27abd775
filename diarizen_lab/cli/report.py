"""``diarizen-lab report``: an experiment's results table (markdown) and DER-breakdown chart (PNG)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="results table (markdown) and DER breakdown chart (PNG) from score JSON files",
        description="Collect `diarizen-lab score -o` JSON files into a markdown table and a PNG chart beside it; "
        "each DER comes with its 95 % bootstrap interval over recordings.",
    )
    parser.add_argument("scores", nargs="+", metavar="SET=SCORE_JSON", help="test-set name and its score file")
    parser.add_argument("-o", "--output", type=Path, required=True, help="markdown file to write (PNG beside it)")
    parser.add_argument("--title", default=None, help="title (default: the output's parent directory name)")
    parser.add_argument(
        "--baseline", default=None, metavar="SET",
        help="add each row's paired DER difference to this set's row of the same condition and recordings",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diarizen_lab.errors import DiarizenLabError
    from diarizen_lab.evaluation.report import read_score, write_report

    results = []
    for item in args.scores:
        name, separator, path = item.partition("=")
        if not separator or not name or not path:
            raise DiarizenLabError(f"expected SET=SCORE_JSON, got {item!r} (e.g. test=exp/x/test/score.json)")
        results.append(read_score(name, path))
    title = args.title or args.output.resolve().parent.name
    markdown, chart = write_report(title, results, args.output, baseline=args.baseline)
    print(markdown.read_text(), end="")
    print(f"wrote {markdown} and {chart}")
    return 0
