"""Distill-and-prune training of a WavLM student (DPHuBERT): the training recipe with a distill-prune config.

One process (CPU or one GPU)::

    python recipes/diar_ssl_pruning/run_distill_prune.py -C conf/prune_tiny.toml

Several GPUs (DDP; ``[dataloader] batch_size`` is per process; keep ``--mixed_precision`` equal to the
config's ``[trainer] mixed_precision``)::

    accelerate launch --multi_gpu --num_processes 4 --num_machines 1 --mixed_precision bf16 \\
        --dynamo_backend no recipes/diar_ssl_pruning/run_distill_prune.py -C conf/prune_s80_base.toml

Resume after an interruption: add ``--resume`` (latest checkpoint) or ``--resume exp/.../epoch_NNNN``.
The config is a training config whose ``[objective]`` is ``diarizen_lab.pruning.DistillPruneObjective`` (see
``conf/prune_tiny.toml``), so this is :func:`diarizen_lab.training.recipe.train`, as ``diarizen-lab train``.
"""

import argparse
import sys

from diarizen_lab.cli.train import run_script
from diarizen_lab.training.recipe import load_training_config, train


def main(args: argparse.Namespace) -> None:
    train(load_training_config(args.config, args.overrides), resume=args.resume)


if __name__ == "__main__":
    sys.exit(run_script(main, __doc__))
