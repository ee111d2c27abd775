"""``diarizen-lab train``: train the model of a TOML config (supervised segmentation or distill-and-prune)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from diarizen_lab.config import add_config_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a config: segmentation, or distill-and-prune (one process, or `accelerate launch`)",
        description="Train the model described by a TOML config into <[meta] exp_dir>/<name>/; the config's "
        "[objective] says what is optimised (default: the powerset segmentation loss).",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``-C/--config``, ``--set`` and ``--resume`` (shared with the training recipes)."""
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        type=Path,
        metavar="PATH",
        help="continue from the latest checkpoint of the experiment (start fresh if it has none), "
        "or from PATH (a checkpoints/epoch_NNNN directory or an experiment directory)",
    )


def run(args: argparse.Namespace) -> int:
    from diarizen_lab.training.recipe import load_training_config, train

    train(load_training_config(args.config, args.overrides), resume=args.resume)
    return 0


def run_script(main: Callable[[argparse.Namespace], None], description: str) -> int:
    """Run a training recipe script: parse ``-C``/``--set``/``--resume`` and call ``main`` with them,
    reporting bad input as one line (exit code 2), as the CLI does."""
    from diarizen_lab.cli import report_errors

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return report_errors(main, parser.parse_args(), program=parser.prog)
