"""``diarizen-lab diarize``: one RTTM per recording, from pyannote.audio's pipeline around our segmentation model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

DESCRIPTION = """\
Diarize recordings with pyannote.audio's SpeakerDiarization pipeline around a trained segmentation model.

-c takes a model checkpoint (model.pt or an averaged checkpoint), an epoch directory, or an experiment
directory (its checkpoints/best). -i takes a wav.scp, one audio file, or a directory of audio files.
Pipeline settings (embedding model, clustering ahc|vbx, PLDA, window, step_ratio, median_filter,
min_active_ratio, ahc_threshold, min_cluster_size, vbx_ahc_criterion, vbx_fa, vbx_fb, vbx_lda_dim,
vbx_max_iters, speaker counts; defaults: upstream DiariZen's) come from the [diarization] section of --config
and/or --set diarization.KEY=VALUE; the speaker-embedding model and the PLDA are resolved from the offline
checkpoint store, never downloaded.

Each RTTM is written atomically when its recording is done: a run stopped by a bad recording keeps the
finished ones and writes nothing for the rest (fix the input and resume with --skip-existing).
"""

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".sph")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diarize",
        help="write one RTTM per recording with the pyannote.audio pipeline",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--checkpoint", type=Path, required=True, help="model file, epoch dir or exp dir")
    parser.add_argument("-i", "--input", type=Path, required=True, help="wav.scp, audio file or directory")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output directory for <recording>.rttm")
    parser.add_argument("--config", type=Path, default=None, help="TOML file with a [diarization] section")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="diarization.KEY=VALUE",
        help="override a pipeline setting, e.g. --set diarization.clustering=vbx (repeatable)",
    )
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="offline checkpoint store")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--skip-existing", action="store_true", help="keep RTTMs already in the output directory")
    parser.set_defaults(func=run)


def recordings(source: Path) -> dict[str, Path]:
    """Recording name -> audio path, from a wav.scp, one audio file, or a directory of audio files."""
    from diarizen_lab.data.wav_scp import read_wav_scp
    from diarizen_lab.errors import InputError

    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise InputError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in directory", path=source)
        return {path.stem: path for path in files}
    if not source.exists():
        raise InputError("input not found", path=source, fix="pass a wav.scp, an audio file or a directory")
    if source.suffix.lower() in AUDIO_SUFFIXES:
        return {source.stem: source}
    listed = read_wav_scp(source)
    for uri, path in listed.items():
        if not path.is_file():
            raise InputError(
                f"recording {uri!r}: no audio file {path}", path=source, fix="correct its path in the wav.scp"
            )
    return listed


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from diarizen_lab.config import load_config
    from diarizen_lab.errors import DiarizenLabError
    from diarizen_lab.evaluation.pipeline import DiarizationConfig, build_pipeline, diarize_file
    from diarizen_lab.evaluation.rttm import write_rttm
    from diarizen_lab.models.io import load_model

    logging.basicConfig(format="diarizen-lab: warning: %(message)s", level=logging.WARNING)
    settings = load_config(args.config, {"diarization": DiarizationConfig}, args.overrides)["diarization"]
    if args.output.exists() and not args.output.is_dir():
        raise DiarizenLabError(f"{args.output}: exists and is not a directory (-o takes the output directory)")
    todo = recordings(args.input)
    if args.skip_existing:
        todo = {uri: path for uri, path in todo.items() if not (args.output / f"{uri}.rttm").exists()}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.checkpoint)
    pipeline = build_pipeline(model, settings, checkpoint_dir=args.checkpoint_dir, device=device)
    for uri, path in tqdm(todo.items(), desc="diarize", unit="rec", disable=len(todo) < 2):
        diarization = diarize_file(pipeline, path, uri=uri)
        write_rttm(args.output / f"{uri}.rttm", diarization, uri)
    print(f"wrote {len(todo)} RTTM file(s) to {args.output}")
    return 0
