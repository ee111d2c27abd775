"""Distill-and-prune training of a WavLM student (DPHuBERT), on the trainer of the supervised recipe.

One process (CPU or one GPU)::

    python recipes/diar_ssl_pruning/run_distill_prune.py -C conf/prune_tiny.toml

Several GPUs (DDP; ``[dataloader] batch_size`` is per process; keep ``--mixed_precision`` equal to the
config's ``[trainer] mixed_precision``)::

    accelerate launch --multi_gpu --num_processes 4 --num_machines 1 --mixed_precision bf16 \\
        --dynamo_backend no recipes/diar_ssl_pruning/run_distill_prune.py -C conf/prune_s80_base.toml

Resume after an interruption: add ``--resume`` (latest checkpoint) or ``--resume exp/.../epoch_NNNN``.
The same as ``diarizen-lab prune train``; the config layout is in :mod:`diarizen_lab.pruning.recipe`.
"""

import sys

from diarizen_lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["prune", "train", *sys.argv[1:]]))
