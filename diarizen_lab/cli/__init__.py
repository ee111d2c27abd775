"""The ``diarizen-lab`` command line.

Each module in this package that defines ``register(subparsers)`` adds one subcommand; ``register`` builds
its parser and sets ``func`` (called with the parsed arguments, returns an exit code or ``None``).
Heavy imports (torch, pyannote) happen inside ``func`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable
from typing import Any

from diarizen_lab.errors import DiarizenLabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diarizen-lab",
        description="Train, prune and evaluate WavLM-Conformer speaker-diarization models, offline.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(args.func, args)


def report_errors(function: Callable[..., int | None], *args: Any, program: str = "diarizen-lab") -> int:
    """Call ``function(*args)``; return its exit code, or 2 after printing a :class:`DiarizenLabError` as one
    line (130 when interrupted). The CLI and the recipes run their work through it."""
    try:
        code = function(*args)
    except DiarizenLabError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
