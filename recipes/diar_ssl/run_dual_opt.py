"""Train a WavLM-Conformer (or Fbank-Conformer) segmentation model with dual optimizers.

The recipe is :func:`diarizen_lab.training.recipe.train`: config -> accelerator -> powerset objective -> model
for the ``[task]`` (optionally initialised from ``[finetune] init_from``) -> chunk datasets with the model's frame
geometry -> ``[optimizer_small]`` (WavLM) and ``[optimizer_big]`` (the rest), or one ``[optimizer]`` -> trainer.
``diarizen-lab train`` calls the same function. Sections: see :mod:`diarizen_lab.training`.

One process (CPU or one GPU)::

    python recipes/diar_ssl/run_dual_opt.py -C conf/tiny_wavlm_conformer.toml [--set trainer.max_epochs=3]

Resume after an interruption (the latest complete checkpoint, or a given one)::

    python recipes/diar_ssl/run_dual_opt.py -C conf/x.toml --resume
    python recipes/diar_ssl/run_dual_opt.py -C conf/x.toml --resume exp/x/checkpoints/epoch_0012

Several GPUs of one machine (DDP; ``[dataloader] batch_size`` is per process)::

    accelerate launch --multi_gpu --num_processes 4 --num_machines 1 --mixed_precision bf16 \\
        --dynamo_backend no recipes/diar_ssl/run_dual_opt.py -C conf/x.toml

Several machines (run on each, with its own ``--machine_rank``; rank 0's address and a free port)::

    accelerate launch --multi_gpu --num_machines 2 --machine_rank 0 --num_processes 16 \\
        --main_process_ip 10.0.0.1 --main_process_port 29500 --mixed_precision bf16 --dynamo_backend no \\
        recipes/diar_ssl/run_dual_opt.py -C conf/x.toml

(``--num_processes`` counts processes over all machines; ``[meta] exp_dir`` must be on a filesystem every
machine sees: each process reads its own random state from the checkpoint when resuming.) Two-process DDP on a CPU-only machine, for tests::

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no recipes/diar_ssl/run_dual_opt.py -C conf/tiny_wavlm_conformer.toml

``[trainer] mixed_precision`` in the config is what the run uses; keep ``accelerate launch
--mixed_precision`` the same.
"""

import argparse
import sys

from diarizen_lab.cli.train import run_script
from diarizen_lab.training.recipe import load_training_config, train


def main(args: argparse.Namespace) -> None:
    train(load_training_config(args.config, args.overrides), resume=args.resume)


if __name__ == "__main__":
    sys.exit(run_script(main, __doc__))
