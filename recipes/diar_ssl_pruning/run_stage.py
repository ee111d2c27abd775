"""Fine-tune before pruning (DiariZen's recipe), stage by stage.

Each stage calls the library (training, averaging, extraction and pruning) or the supervised recipe's
:func:`run_stages` (recipes/diar_ssl/run_stage.py), and
skips work whose output exists, so running the recipe again resumes it; ``--stage N --stop-stage M`` runs a
part. It runs from any working directory: the configs' paths are relative to their ``[meta] root``.

  1 teacher    train the diarization model the teacher comes from (the supervised recipe, stages 1-3), unless
               --finetuned names one
  2 extract    its WavLM -> the teacher file of the pruning config ([objective] teacher, the student's start)
  3 distill    distill-and-prune training of the gated student (conf/prune_*.toml)
  4 apply      average the student checkpoints after the loss peak, slice out the pruned WavLM + JSON report
  5 redistill  (--redistill) distil the pruned WavLM from the teacher again, without gates, and re-export it
  6 finetune   train a WavLM-Conformer on the pruned WavLM (dual optimizer; conf/prune_*_finetune.toml)
  7 evaluate   average, diarize the test sets, score and report (the supervised recipe, stages 3-5)

Synthetic corpus on CPU::

    python recipes/diar_ssl_pruning/run_stage.py -C conf/prune_tiny.toml

AMI with the real configs (a WavLM Base+ WavLM-Conformer fine-tuned on AMI is the teacher's source; the two
training stages run on GPUs under ``accelerate launch``, see run_distill_prune.py)::

    python recipes/diar_ssl_pruning/run_stage.py -C conf/prune_s80_base.toml \\
        --finetuned exp/wavlm_base_plus_ami/avg_best_5.pt --stage 2 --stop-stage 2
    accelerate launch --multi_gpu --num_processes 4 recipes/diar_ssl_pruning/run_distill_prune.py \\
        -C conf/prune_s80_base.toml
    python recipes/diar_ssl_pruning/run_stage.py -C conf/prune_s80_base.toml --stage 4 --stop-stage 4
    accelerate launch --multi_gpu --num_processes 4 recipes/diar_ssl/run_dual_opt.py \\
        -C conf/prune_s80_base_finetune.toml
    python recipes/diar_ssl_pruning/run_stage.py -C conf/prune_s80_base.toml --stage 7 \\
        --diarization conf/diarization/wespeaker_vbx.toml
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from diarizen_lab.cli import report_errors
from diarizen_lab.cli.average import print_record
from diarizen_lab.cli.prune import print_report
from diarizen_lab.pruning.apply import write_pruned
from diarizen_lab.pruning.extract import write_teacher
from diarizen_lab.training.recipe import load_training_config, train
from diarizen_lab.training.run_dir import average_checkpoints

REPO = Path(__file__).resolve().parents[2]


def supervised_recipe():
    """The supervised recipe (recipes/diar_ssl/run_stage.py) as a module, wherever this one is run from."""
    spec = importlib.util.spec_from_file_location("diar_ssl_run_stage", REPO / "recipes" / "diar_ssl" / "run_stage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-C", "--config", type=Path, required=True, help="distill-and-prune config (conf/prune_*.toml)")
    parser.add_argument("--finetune-config", type=Path, default=None,
                        help="WavLM-Conformer config of stage 6 (default: the -C config with _finetune)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--teacher-config", type=Path, default=REPO / "conf" / "tiny_wavlm_conformer.toml",
                        help="supervised config trained in stage 1 (default: conf/tiny_wavlm_conformer.toml)")
    source.add_argument("--finetuned", type=Path, default=None,
                        help="an already fine-tuned diarization model (model.pt, averaged file or exp dir)")
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--stop-stage", type=int, default=7)
    parser.add_argument("--average", type=int, default=2, metavar="N",
                        help="student checkpoints averaged after the loss peak (default 2)")
    parser.add_argument("--redistill", action="store_true", help="run stage 5 (further distillation)")
    supervised = supervised_recipe()
    parser.add_argument("--diarization", type=Path, default=supervised.DIARIZATION)
    args = parser.parse_args()
    run = lambda stage: args.stage <= stage <= args.stop_stage  # noqa: E731

    config = load_training_config(args.config)
    run_dir = config["meta"].run_dir
    work_dir = run_dir.parent
    teacher = config["objective"].args["teacher"]
    finetune_config = args.finetune_config or args.config.with_name(f"{args.config.stem}_finetune.toml")
    pruned = work_dir / "pruned.pt"
    final = work_dir / ("pruned_redistilled.pt" if args.redistill else "pruned.pt")

    finetuned = args.finetuned
    if finetuned is None:
        finetuned = load_training_config(args.teacher_config)["meta"].run_dir / "avg_best_3.pt"
        if run(1) and not finetuned.exists():
            print(f"+ supervised recipe, stages 1-3: {args.teacher_config}", flush=True)
            supervised.run_stages(args.teacher_config, 1, 3, average=3)
    if run(2):
        if teacher.exists():
            print(f"stage 2: {teacher} exists, skipped")
        else:
            print(f"+ extract the WavLM of {finetuned} -> {teacher}", flush=True)
            write_teacher(finetuned, teacher)
    if run(3):
        print(f"+ distill-prune {args.config}", flush=True)
        train(config, resume=True)
    if run(4):
        averaged = run_dir / f"avg_after_peak_{args.average}.pt"
        monitor = config["checkpoint"]  # the validation loss of the distillation
        record = average_checkpoints(run_dir, averaged, metric=monitor.monitor, mode="after_peak", n=args.average,
                                     metric_mode=monitor.mode)
        print_record(record, averaged)
        print_report(write_pruned(averaged, pruned, teacher=teacher))
    if run(5) and args.redistill:
        redistill = load_training_config(
            args.config, ['meta.name="redistill"', f'model.args.wavlm_checkpoint="{pruned}"', "model.args.units=[]"]
        )
        print(f"+ distill {pruned} from the teacher again, without gates", flush=True)
        train(redistill, resume=True)
        print_report(write_pruned(redistill["meta"].run_dir, final, teacher=teacher))
    if run(6):
        print(f"+ train {finetune_config} on {final}", flush=True)
        train(load_training_config(finetune_config, [f'model.args.wavlm_checkpoint="{final}"']), resume=True)
    if run(7):
        print(f"+ supervised recipe, stages 3-5: {finetune_config}", flush=True)
        supervised.run_stages(finetune_config, 3, 5, diarization=args.diarization)


if __name__ == "__main__":
    sys.exit(report_errors(main, program=sys.argv[0]))
