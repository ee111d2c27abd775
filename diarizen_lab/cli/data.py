"""``diarizen-lab data``: check data directories, synthesize a corpus, prepare AMI / AISHELL-4 / AliMeeting."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="check data directories, synthesize a test corpus, prepare public corpora",
        description=__doc__,
    )
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    check = commands.add_parser(
        "check", help="validate data directories (wav.scp, rttm, uem) and summarize them; exit 1 on errors",
    )
    check.add_argument("data_dirs", nargs="+", type=Path, metavar="DIR")
    check.add_argument("--sample-rate", type=int, default=16000, help="expected sample rate (default 16000)")
    check.add_argument("--channel", type=int, default=0, help="channel the dataset reads (default 0)")
    check.add_argument("--resample", action="store_true", help="accept other sample rates (resampled on the fly)")
    check.set_defaults(func=run_check)

    synth = commands.add_parser(
        "synth", help="write a synthetic multi-speaker meeting corpus (espeak-ng voices) to OUT/{train,dev,test}",
    )
    synth.add_argument("out_dir", type=Path, metavar="OUT")
    synth.add_argument("--minutes", type=float, default=10.0, help="total audio, split 80/10/10 (default 10)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    synth.add_argument("--overlap", type=float, default=0.15, help="overlapped share of speech (default 0.15)")
    synth.add_argument("--meeting-minutes", type=float, default=2.0, help="meeting duration (default 2)")
    synth.add_argument("--force", action="store_true", help="replace OUT even if it is not empty")
    synth.add_argument(
        "--noise", action="store_true",
        help="also write OUT/noise (MUSAN layout: noise/, music/) and OUT/rirs, for training augmentation",
    )
    synth.set_defaults(func=run_synth)

    ami = commands.add_parser(
        "prep-ami", help="AMI (AMI-diarization-setup partition) -> OUT/<mic>/{train,dev,test}"
    )
    ami.add_argument("--ami-root", type=Path, required=True, help="AMI download: <root>/<meeting>/audio/*.wav")
    ami.add_argument("--setup", type=Path, required=True, help="checkout of BUTSpeechFIT/AMI-diarization-setup")
    ami.add_argument("--out", type=Path, required=True, help="output directory")
    ami.add_argument("--mic", action="append", choices=["sdm", "ihm-mix"],
                     help="microphone setting, repeatable (default: both)")
    ami.add_argument("--annotations", default="only_words", choices=["only_words", "word_and_vocalsounds"])
    ami.set_defaults(func=run_prep_ami)

    aishell4 = commands.add_parser("prep-aishell4", help="AISHELL-4 (OpenSLR 111) -> OUT/{train,test}")
    aishell4.add_argument("--root", type=Path, required=True, help="directory holding train_L, ..., test")
    aishell4.add_argument("--out", type=Path, required=True, help="output directory")
    aishell4.set_defaults(func=run_prep_aishell4)

    alimeeting = commands.add_parser(
        "prep-alimeeting", help="AliMeeting far-field (OpenSLR 119) -> OUT/{train,dev,test}"
    )
    alimeeting.add_argument("--root", type=Path, required=True, help="directory holding Eval_Ali, Test_Ali, ...")
    alimeeting.add_argument("--out", type=Path, required=True, help="output directory")
    alimeeting.set_defaults(func=run_prep_alimeeting)


def run_check(args: argparse.Namespace) -> int:
    from diarizen_lab.data.check import check_data_dir, format_report

    reports = [
        check_data_dir(path, sample_rate=args.sample_rate, channel=args.channel, resample=args.resample)
        for path in args.data_dirs
    ]
    print(format_report(reports))
    return 1 if any(report.errors for report in reports) else 0


def run_synth(args: argparse.Namespace) -> None:
    from diarizen_lab.data.synth import synthesize_corpus
    from diarizen_lab.errors import InputError

    out = args.out_dir
    if (out.is_symlink() or out.exists()) and not args.force and not (out.is_dir() and not any(out.iterdir())):
        raise InputError(
            "exists and is not an empty folder; data synth replaces OUT as a whole", path=out,
            fix="choose a new or empty folder, or pass --force to replace it",
        )

    meetings = synthesize_corpus(
        args.out_dir, minutes=args.minutes, seed=args.seed, overlap_ratio=args.overlap,
        meeting_minutes=args.meeting_minutes, noise=args.noise,
    )
    counts = ", ".join(f"{split} {len(names)}" for split, names in meetings.items())
    print(f"wrote {args.out_dir} (meetings: {counts})")


def run_prep_ami(args: argparse.Namespace) -> None:
    from diarizen_lab.data.corpora.ami import prepare_ami

    mics = tuple(args.mic or ("sdm", "ihm-mix"))
    counts = prepare_ami(args.ami_root, args.setup, args.out, mics=mics, annotations=args.annotations)
    for mic, splits in counts.items():
        print(f"wrote {args.out / mic} (meetings: {', '.join(f'{s} {n}' for s, n in splits.items())})")


def run_prep_aishell4(args: argparse.Namespace) -> None:
    from diarizen_lab.data.corpora.aishell4 import prepare_aishell4

    counts = prepare_aishell4(args.root, args.out)
    print(f"wrote {args.out} (sessions: {', '.join(f'{s} {n}' for s, n in counts.items())})")


def run_prep_alimeeting(args: argparse.Namespace) -> None:
    from diarizen_lab.data.corpora.alimeeting import prepare_alimeeting

    counts = prepare_alimeeting(args.root, args.out)
    print(f"wrote {args.out} (recordings: {', '.join(f'{s} {n}' for s, n in counts.items())})")
