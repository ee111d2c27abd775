"""Long-recording inference on CPU: real-time factor and peak memory of the diarization pipeline.

Runs ``build_pipeline`` + ``diarize_file`` (a WavLM-Conformer segmentation model with random weights, the
``fbank-stats`` speaker embedding, agglomerative clustering) on synthetic meetings looped to 10 and 60 minutes,
with two WavLM encoders: Base+ and the published 80%-sparsity pruned Base+ ("s80"). Each run is a fresh
subprocess whose peak resident memory (``ru_maxrss``) is the figure reported, next to the real-time factor
(processing seconds / audio seconds). Targets: peak RSS <= 3 GiB, and nearly flat in the recording length: at most
0.5 GiB more at 60 than at 10 minutes (the 50 extra minutes of float32 waveform are 0.18 GiB). The growth is
given in GiB rather than as a ratio because the fixed part (libraries, model) differs fourfold between encoders,
and because the peak of one run varies by up to 0.2 GiB from one process to the next.

Segmentation cost is proportional to 1 / step ratio. The defaults (step ratio 1: windows side by side; both
encoders at 10 and 60 minutes) take about 13 minutes on two CPU cores, most of it Base+ at 60 minutes; 0.1 is
the accuracy setting, ten times slower. ``--runs s80:10 s80:60`` is the quick check (about 3 minutes).

    python benchmarks/bench_long_audio.py [--runs s80:10 s80:60 base_plus:10 base_plus:60] [--step-ratio 1.0]
                                          [--batch-size 8] [--threads 2] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
MODELS = ("s80", "base_plus")
DEFAULT_RUNS = [("s80", 10.0), ("s80", 60.0), ("base_plus", 10.0), ("base_plus", 60.0)]
PEAK_RSS_TARGET_GIB = 3.0
GROWTH_TARGET_GIB = 0.5
"""Largest accepted increase of the peak RSS from the shortest recording to the longest."""


def wavlm_architecture(name: str) -> dict:
    """The ``WavLMConfig`` dict of a benchmarked encoder (the same architectures as ``bench_pruned.py``)."""
    from bench_pruned import architectures

    return architectures()[name].to_dict()


def write_long_meeting(folder: Path, minutes: list[float]) -> dict[float, Path]:
    """Synthesize a few meetings, concatenate them and loop the result to each duration (16-bit WAV files)."""
    from diarizen_lab.data.synth import synthesize_corpus

    synthesize_corpus(folder / "synth", minutes=6, seed=0, meeting_minutes=2)
    meetings = [sf.read(path, dtype="int16")[0] for path in sorted((folder / "synth").glob("*/wav/*.wav"))]
    loop = np.concatenate(meetings)
    paths = {}
    for duration in minutes:
        num_samples = round(duration * 60 * SAMPLE_RATE)
        path = folder / f"meeting_{duration:g}min.wav"
        sf.write(path, np.resize(loop, num_samples), SAMPLE_RATE, subtype="PCM_16")
        paths[duration] = path
    return paths


def measure(model_name: str, audio: Path, step_ratio: float, batch_size: int, threads: int) -> dict:
    """Diarize ``audio`` in this process; return timings and peak RSS (call once per fresh process)."""
    import torch

    from diarizen_lab.data.task import Task
    from diarizen_lab.evaluation.pipeline import DiarizationConfig, build_pipeline, diarize_file
    from diarizen_lab.models.wavlm_conformer import WavLMConformer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = WavLMConformer(wavlm=wavlm_architecture(model_name), task=Task()).eval()
    config = DiarizationConfig(
        embedding="fbank-stats", clustering="ahc", step_ratio=step_ratio,
        segmentation_batch_size=batch_size, embedding_batch_size=32,
    )
    pipeline = build_pipeline(model, config, device="cpu")
    rss_before_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    diarization = diarize_file(pipeline, audio)
    seconds = time.perf_counter() - start
    duration = sf.info(str(audio)).duration
    return {
        "model": model_name,
        "minutes": duration / 60,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "seconds": seconds,
        "rtf": seconds / duration,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rss_before_diarization_gib": rss_before_gib,
        "speakers": len(diarization.labels()),
    }


def run_child(model_name: str, audio: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, __file__, "--child", model_name, str(audio), "--step-ratio", str(args.step_ratio),
        "--batch-size", str(args.batch_size), "--threads", str(args.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{model_name} on {audio.name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_run(text: str) -> tuple[str, float]:
    model_name, _, minutes = text.partition(":")
    if model_name not in MODELS or not minutes:
        raise argparse.ArgumentTypeError(f"expected MODEL:MINUTES with MODEL in {', '.join(MODELS)}, got {text!r}")
    return model_name, float(minutes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=parse_run, nargs="+", default=DEFAULT_RUNS, metavar="MODEL:MINUTES",
                        help="encoder and recording duration of each run (default: "
                        f"{' '.join(f'{m}:{n:g}' for m, n in DEFAULT_RUNS)})")
    parser.add_argument("--step-ratio", type=float, default=1.0,
                        help="segmentation window step as a fraction of the 8 s window (default 1.0)")
    parser.add_argument("--batch-size", type=int, default=8, help="segmentation windows per forward pass")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "AUDIO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]), args.step_ratio, args.batch_size,
                                 args.threads)))
        return

    settings = {key: getattr(args, key) for key in ("step_ratio", "batch_size", "threads")}
    print(f"settings: {settings}, embedding fbank-stats, clustering ahc, CPU")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        audio = write_long_meeting(Path(tmp), sorted({minutes for _, minutes in args.runs}))
        print(f"wrote {', '.join(p.name for p in audio.values())} in {time.perf_counter() - start:.0f} s")
        for model_name, minutes in args.runs:
            run = run_child(model_name, audio[minutes], args)
            runs.append(run)
            print(f"{model_name:<10} {minutes:5g} min  RTF {run['rtf']:.3f}  ({run['seconds']:.0f} s)  "
                  f"peak RSS {run['peak_rss_gib']:.2f} GiB (model loaded: {run['rss_before_diarization_gib']:.2f} "
                  f"GiB)  {run['parameters_m']:.1f} M parameters", flush=True)
    results = []
    for run in runs:
        label = f"{run['model']}, {run['minutes']:g} min"
        peak_ok = run["peak_rss_gib"] <= PEAK_RSS_TARGET_GIB
        results += [
            {"name": f"real-time factor, {label}", "value": run["rtf"], "unit": "x real time"},
            {"name": f"peak RSS, {label}", "value": run["peak_rss_gib"], "unit": "GiB",
             "target": f"<= {PEAK_RSS_TARGET_GIB:g}", "ok": peak_ok},
        ]
    for model_name in dict.fromkeys(model for model, _ in args.runs):
        by_length = sorted((run["minutes"], run["peak_rss_gib"]) for run in runs if run["model"] == model_name)
        if len(by_length) > 1:
            (short, short_peak), (long, long_peak) = by_length[0], by_length[-1]
            growth = long_peak - short_peak
            print(f"{model_name}: peak RSS at {long:g} min - at {short:g} min = {growth:+.2f} GiB "
                  f"(target <= {GROWTH_TARGET_GIB:g} GiB)")
            results.append({"name": f"peak RSS growth {short:g} -> {long:g} min, {model_name}", "value": growth,
                            "unit": "GiB", "target": f"<= {GROWTH_TARGET_GIB:g}", "ok": growth <= GROWTH_TARGET_GIB})
    worst = max(run["peak_rss_gib"] for run in runs)
    print(f"largest peak RSS {worst:.2f} GiB (target <= {PEAK_RSS_TARGET_GIB:g} GiB)")
    if args.json:
        args.json.write_text(json.dumps({
            "benchmark": "long_audio",
            "results": results,
            "settings": {**settings, "embedding": "fbank-stats", "clustering": "ahc", "device": "cpu"},
            "runs": runs,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
