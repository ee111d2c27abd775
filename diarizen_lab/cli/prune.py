"""``diarizen-lab prune``: structured pruning of WavLM by distillation (extract, average, apply); the training
step is ``diarizen-lab train`` with a distill-prune config."""

from __future__ import annotations

import argparse
from pathlib import Path

from diarizen_lab.data.task import Task

DESCRIPTION = """\
Four steps turn a fine-tuned WavLM-Conformer's encoder into a smaller WavLM:
  extract   take the WavLM out of a diarization model (the teacher and the student's starting point)
  (train)   `diarizen-lab train -C conf/prune_*.toml`: distil the teacher into a gated student while a
            Lagrangian drives it to the target sparsity (the config's [objective] is DistillPruneObjective)
  average   average the student checkpoints after the validation-loss peak (weights and gates)
  apply     slice the gated student into a physically smaller WavLM, with a JSON size report
Then fine-tune a WavLM-Conformer with wavlm_checkpoint = the pruned file (see recipes/diar_ssl_pruning).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="prune WavLM by distillation: extract, average, apply (training: `train` with a prune config)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="prune_command", required=True, metavar="STEP")

    extract = commands.add_parser("extract", help="save the WavLM of a trained diarization model")
    extract.add_argument(
        "-c", "--checkpoint", type=Path, required=True,
        help="model.pt, averaged checkpoint, checkpoints/epoch_NNNN or experiment directory",
    )
    extract.add_argument("-o", "--output", type=Path, required=True, help="WavLM file to write")
    extract.set_defaults(func=run_extract)

    # every argument, options included, is kept for the message naming the new command
    moved = commands.add_parser("train", help="moved: diarizen-lab train -C CONFIG", prefix_chars="\0", add_help=False)
    moved.add_argument("rest", nargs="*")
    moved.set_defaults(func=run_train)

    average = commands.add_parser("average", help="average the student checkpoints after the loss peak")
    average.add_argument("-e", "--exp-dir", type=Path, required=True, help="distill-prune experiment directory")
    average.add_argument("--metric", default="val/loss", help="validation loss in metrics.jsonl (default: val/loss)")
    average.add_argument("-n", "--num-epochs", type=int, default=5, help="epochs to average (default: 5)")
    average.add_argument("-o", "--output", type=Path, default=None, help="default: <exp-dir>/avg_after_peak_<N>.pt")
    average.set_defaults(func=run_average)

    apply = commands.add_parser("apply", help="turn a gated student into a smaller WavLM file and a JSON report")
    apply.add_argument(
        "-c", "--checkpoint", type=Path, required=True,
        help="student model.pt (averaged or not), checkpoint directory or experiment directory (its best)",
    )
    apply.add_argument("-o", "--output", type=Path, required=True, help="pruned WavLM file to write")
    apply.add_argument("--report", type=Path, default=None, help="JSON report (default: OUTPUT with .json suffix)")
    apply.add_argument(
        "--teacher", default=None,
        help="WavLM (asset name or path) the sparsity is relative to (default: the student's own architecture)",
    )
    apply.add_argument(
        "--sample-rate", type=int, default=Task.sample_rate, help="sample rate of the MAC counts (default: %(default)s)"
    )
    apply.add_argument(
        "--seconds", type=float, default=1.0,
        help="input length for MAC counts (the attention-score term grows with it; default: 1.0)",
    )
    apply.set_defaults(func=run_apply)


def run_extract(args: argparse.Namespace) -> int:
    from diarizen_lab.pruning.extract import write_teacher

    wavlm = write_teacher(args.checkpoint, args.output)
    params = sum(p.numel() for p in wavlm.parameters())
    print(f"wrote {args.output} ({wavlm.config.num_layers} layers, {params / 1e6:.2f}M parameters)")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from diarizen_lab.errors import InputError

    raise InputError(
        "`prune train` is now `diarizen-lab train`: a distill-prune config is a training config",
        fix=f"run: diarizen-lab train {' '.join(args.rest)}".rstrip(),
    )


def run_average(args: argparse.Namespace) -> int:
    from diarizen_lab.cli.average import print_record
    from diarizen_lab.training.run_dir import average_checkpoints

    output = args.output or args.exp_dir / f"avg_after_peak_{args.num_epochs}.pt"
    record = average_checkpoints(
        args.exp_dir, output, metric=args.metric, mode="after_peak", n=args.num_epochs, metric_mode="min"
    )
    print_record(record, output)
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from diarizen_lab.config import resolve_reference
    from diarizen_lab.pruning.apply import write_pruned

    # a name given on the command line: a path relative to here, or an asset of the store
    teacher = None if args.teacher is None else resolve_reference(args.teacher, Path.cwd()).require()
    report = write_pruned(
        args.checkpoint, args.output, args.report, teacher, seconds=args.seconds, sample_rate=args.sample_rate
    )
    print_report(report)
    return 0


def print_report(report: dict) -> None:
    """The sizes before and after pruning, the hidden-state check and the files written."""
    before, after = report["before"], report["after"]
    print(f"params  {before['params']['total'] / 1e6:8.2f}M -> {after['params']['total'] / 1e6:8.2f}M "
          f"(sparsity {report['sparsity']:.2%})")
    print(f"GMAC/s  {before['macs_per_second']['total'] / 1e9:8.3f}  -> {after['macs_per_second']['total'] / 1e9:8.3f} "
          f"(-{report['mac_reduction']:.2%})")
    print(f"hidden states vs gated student: max |difference| {report['max_hidden_state_difference']:.2e}")
    print(f"wrote {report['output']} and its JSON report")
