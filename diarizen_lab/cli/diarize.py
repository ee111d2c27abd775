"""``diarizen-lab diarize``: one RTTM per recording, from pyannote.audio's pipeline around our segmentation model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

DESCRIPTION = """\
Diarize recordings with pyannote.audio's SpeakerDiarization pipeline around a trained segmentation model.

-c takes a model checkpoint (model.pt or an averaged checkpoint), an epoch directory, an experiment
directory (its checkpoints/best), a released DiariZen folder (config.toml + pytorch_model.bin), or the store
asset name of either (e.g. a Hugging Face cache tree BUT-FIT/diarizen-wavlm-base-s80-md). A released model's
[inference.args], [clustering.args] and plda/ are used for every setting that --config and --set leave out.
-i takes a wav.scp, one audio file, or a directory of audio files.
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
    parser.add_argument(
        "-c", "--checkpoint", required=True, help="model file, epoch dir, exp dir, released folder, asset name or .onnx export"
    )
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
        found: dict[str, Path] = {}
        for path in files:
            name = recording_name(path)
            if name in found:
                raise InputError(
                    f"{found[name].name} and {path.name} would both be recording {name!r}", path=source,
                    fix="keep one of them, or list the recordings in a wav.scp with distinct names",
                )
            found[name] = path
        return found
    if not source.exists():
        raise InputError("input not found", path=source, fix="pass a wav.scp, an audio file or a directory")
    if source.suffix.lower() in AUDIO_SUFFIXES:
        return {recording_name(source): source}
    listed = read_wav_scp(source)
    for uri, path in listed.items():
        if not path.is_file():
            raise InputError(
                f"recording {uri!r}: no audio file {path}", path=source, fix="correct its path in the wav.scp"
            )
    return listed


def recording_name(audio: Path) -> str:
    """The recording name of an audio file given directly: its stem, which must hold no whitespace (RTTM and
    wav.scp fields are whitespace-separated; Kaldi's rule). A wav.scp names a recording itself, so the path it
    lists may hold spaces."""
    from diarizen_lab.errors import InputError

    if any(character.isspace() for character in audio.stem):
        raise InputError(
            f"recording name {audio.stem!r} (the file name) contains whitespace, which an RTTM line cannot hold",
            path=audio,
            fix="rename the file, or list it in a wav.scp line '<name> <path with spaces>'",
        )
    return audio.stem


def settings_set_by_user(config: Path | None, overrides: list[str]) -> set[str]:
    """Names of the [diarization] settings that the --config file or --set give (already validated)."""
    import tomllib

    names = {override.partition("=")[0].strip().removeprefix("diarization.") for override in overrides}
    if config is not None:
        names |= set(tomllib.loads(config.read_text()).get("diarization", {}))
    return names


def run(args: argparse.Namespace) -> int:
    from diarizen_lab.config import load_config
    from diarizen_lab.evaluation.diarize import diarize_recordings
    from diarizen_lab.evaluation.pipeline import DiarizationConfig

    logging.basicConfig(format="diarizen-lab: warning: %(message)s", level=logging.WARNING)
    settings = load_config(args.config, {"diarization": DiarizationConfig}, args.overrides)["diarization"]
    written = diarize_recordings(
        args.checkpoint, recordings(args.input), args.output, settings,
        settings_given=settings_set_by_user(args.config, args.overrides), checkpoint_dir=args.checkpoint_dir,
        device=args.device, skip_existing=args.skip_existing,
    )
    print(f"wrote {len(written)} RTTM file(s) to {args.output}")
    return 0
