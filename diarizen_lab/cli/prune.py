"""``diarizen-lab prune``: structured pruning of WavLM by distillation (extract, train, average, apply)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diarizen_lab.config import add_config_arguments

DESCRIPTION = """\
Four steps turn a fine-tuned WavLM-Conformer's encoder into a smaller WavLM:
  extract   take the WavLM out of a diarization model (the teacher and the student's starting point)
  train     distil the teacher into a gated student while a Lagrangian drives it to the target sparsity
  average   average the student checkpoints after the validation-loss peak (weights and gates)
  apply     slice the gated student into a physically smaller WavLM, with a JSON size report
Then fine-tune a WavLM-Conformer with wavlm_checkpoint = the pruned file (see recipes/diar_ssl_pruning).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="prune WavLM by distillation: extract, train, average, apply",
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

    train = commands.add_parser("train", help="distill-and-prune training (one process or `accelerate launch`)")
    add_config_arguments(train)
    train.add_argument(
        "--resume", nargs="?", const=True, default=None, type=Path, metavar="PATH",
        help="continue from the latest checkpoint, or from PATH (a checkpoint or experiment directory)",
    )
    train.set_defaults(func=run_train)

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
        "--seconds", type=float, default=1.0,
        help="input length for MAC counts (the attention-score term grows with it; default: 1.0)",
    )
    apply.set_defaults(func=run_apply)


def run_extract(args: argparse.Namespace) -> int:
    from diarizen_lab.pruning.extract import extract_wavlm
    from diarizen_lab.models.wavlm.formats import save_wavlm

    wavlm = extract_wavlm(args.checkpoint)
    save_wavlm(args.output, wavlm)
    params = sum(p.numel() for p in wavlm.parameters())
    print(f"wrote {args.output} ({wavlm.config.num_layers} layers, {params / 1e6:.2f}M parameters)")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from diarizen_lab.pruning.recipe import distill_prune, load_pruning_config

    distill_prune(load_pruning_config(args.config, args.overrides), resume=args.resume)
    return 0


def run_average(args: argparse.Namespace) -> int:
    from diarizen_lab.pruning.selection import average_after_peak

    output = args.output or args.exp_dir / f"avg_after_peak_{args.num_epochs}.pt"
    record = average_after_peak(args.exp_dir, output, metric=args.metric, n=args.num_epochs)
    print(f"averaged {len(record['epochs'])} epochs after the {record['metric']} peak:")
    for epoch, value in zip(record["epochs"], record["values"]):
        print(f"  epoch {epoch:4d}  {record['metric']} = {value:.6g}")
    print(f"wrote {output}")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    import torch

    from diarizen_lab.errors import DiarizenLabError
    from diarizen_lab.models.io import find_model_file, load_model
    from diarizen_lab.pruning.apply import max_hidden_state_difference, prune_student, pruning_report
    from diarizen_lab.pruning.student import PruningStudent
    from diarizen_lab.models.wavlm.formats import save_wavlm
    from diarizen_lab.utils.atomic import atomic_open

    source = find_model_file(args.checkpoint)
    student = load_model(source)
    if not isinstance(student, PruningStudent):
        raise DiarizenLabError(
            f"{source} holds a {type(student).__name__}, not a PruningStudent: pass a distill-prune checkpoint"
        )
    before = student.wavlm.config
    if args.teacher is not None:
        from diarizen_lab.store import resolve_asset
        from diarizen_lab.models.wavlm.formats import load_wavlm_checkpoint

        before, _ = load_wavlm_checkpoint(resolve_asset(args.teacher))
    pruned = prune_student(student)
    report = pruning_report(before, pruned.config, seconds=args.seconds)
    probe = torch.randn(1, 32000, generator=torch.Generator().manual_seed(0))
    report["max_hidden_state_difference"] = max_hidden_state_difference(student, pruned, probe)
    report["mask_aware_norms"] = student.mask_aware_norms
    report["source"] = str(source)
    report["output"] = str(args.output)
    save_wavlm(args.output, pruned)
    report_path = args.report or args.output.with_suffix(".json")
    with atomic_open(report_path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")

    before, after = report["before"], report["after"]
    print(f"params  {before['params']['total'] / 1e6:8.2f}M -> {after['params']['total'] / 1e6:8.2f}M "
          f"(sparsity {report['sparsity']:.2%})")
    print(f"GMAC/s  {before['macs_per_second']['total'] / 1e9:8.3f}  -> {after['macs_per_second']['total'] / 1e9:8.3f} "
          f"(-{report['mac_reduction']:.2%})")
    print(f"hidden states vs gated student: max |difference| {report['max_hidden_state_difference']:.2e}")
    print(f"wrote {args.output} and {report_path}")
    return 0
