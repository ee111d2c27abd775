"""``diarizen-lab config``: configuration files (``import-upstream``: upstream DiariZen recipe TOMLs -> ours)."""

from __future__ import annotations

import argparse
from pathlib import Path

IMPORT_DESCRIPTION = """\
Convert an upstream DiariZen recipe TOML (recipes/diar_ssl*/conf/*.toml: training, pruning, fine-tuning) into a
diarizen_lab training config. Every upstream key maps to one of ours, is checked against what we always do, or is
unsupported: unsupported keys are listed in one error, unless --allow-unsupported (then the output names each
of them in a comment at its top). Paths are written as upstream gives them; /YOUR_PATH placeholders must be
edited. The key mapping is documented in docs/migrating-from-diarizen.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="convert configuration files (upstream DiariZen recipes)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    imports = actions.add_parser(
        "import-upstream",
        help="convert an upstream DiariZen recipe TOML into a diarizen_lab config",
        description=IMPORT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imports.add_argument("source", metavar="UPSTREAM.toml", type=Path, help="upstream recipe config")
    imports.add_argument("-o", "--output", metavar="OURS.toml", type=Path, required=True, help="the file to write")
    imports.add_argument(
        "--allow-unsupported", action="store_true", help="convert without the settings that have no equivalent"
    )
    imports.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from diarizen_lab.errors import DiarizenLabError, InputError
    from diarizen_lab.upstream_config import convert_upstream_text
    from diarizen_lab.utils.atomic import atomic_open

    if args.output.exists() and not args.force:
        raise DiarizenLabError(f"{args.output} exists (pass --force to overwrite it)")
    try:
        text = args.source.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read ({error})", path=args.source) from None
    converted = convert_upstream_text(text, str(args.source), allow_unsupported=args.allow_unsupported)
    with atomic_open(args.output, "w") as output:
        output.write(converted)
    skipped = sum(line.startswith("# NOT CARRIED OVER") for line in converted.splitlines())
    note = f" ({skipped} upstream setting(s) not carried over: see its header)" if skipped else ""
    print(f"wrote {args.output}{note}")
    return 0
