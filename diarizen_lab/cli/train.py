"""``diarizen-lab train``: supervised training of a segmentation model from a TOML config."""

from __future__ import annotations

import argparse
from pathlib import Path

from diarizen_lab.config import add_config_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a segmentation model (one process, or DDP under `accelerate launch`)",
        description="Train the segmentation model described by a TOML config into <[meta] exp_dir>/<name>/.",
    )
    add_config_arguments(parser)
    add_resume_arguments(parser)
    parser.set_defaults(func=run)


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume [PATH]`` and ``--resume-with-changes`` (read back with :func:`resume_request`)."""
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        type=Path,
        metavar="PATH",
        help="continue from the latest checkpoint of the experiment (start fresh if it has none), "
        "or from PATH (a checkpoints/epoch_NNNN directory or an experiment directory); refused when the config "
        "changes the run",
    )
    parser.add_argument(
        "--resume-with-changes",
        action="store_true",
        help="resume (as --resume) even though the config changes the run (learning rate, data, batch, model, "
        "schedule...): the changes apply from the resumed epoch on and are recorded in config.history.toml",
    )


def resume_request(args: argparse.Namespace) -> dict:
    """The ``resume`` and ``accept_changes`` arguments of the training recipes."""
    resume = True if args.resume is None and args.resume_with_changes else args.resume
    return {"resume": resume, "accept_changes": args.resume_with_changes}


def run(args: argparse.Namespace) -> int:
    from diarizen_lab.training.recipe import load_training_config, train

    train(load_training_config(args.config, args.overrides), **resume_request(args))
    return 0
