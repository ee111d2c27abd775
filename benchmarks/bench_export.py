"""ONNX export: CPU speed of onnxruntime (float32, int8) against torch, and the DER cost of int8.

Speed: the WavLM-Conformer segmentation model (DiariZen's Conformer: 4 layers of width 256) on WavLM Base+ and
on the 80%-sparsity pruned architecture ("s80", as in ``bench_pruned.py``), random weights, one 8 s window per
forward pass (batch 1): median CPU time of ``--repeats`` runs after ``--warmup`` runs, for torch
(``inference_mode``), the exported float32 ONNX file and its int8 version, each on ``--threads`` threads. The
headline figures are the ratios torch / onnxruntime (above 1: onnxruntime is faster). The three are timed in
turn within each repeat, so that a change of load on a shared machine affects them alike.

DER: the trained tiny demo model (``make demo``: ``exp/tiny_wavlm_conformer/avg_best_3.pt``) in the demo's
pipeline (``conf/diarization/fbank_stats_ahc.toml``) on the synthetic test set, collar 0, for torch, ONNX
float32 and ONNX int8 (target: int8 within 1 DER point of torch). When the demo model is missing it is trained
first, as ``make demo`` does (data, training, averaging: stages 1-3 of ``recipes/diar_ssl/run_stage.py``, a few
minutes on 2 idle cores); ``--no-train`` skips the DER part instead.

    python benchmarks/bench_export.py [--threads 1] [--repeats 10] [--parts speed der] [--no-train]
        [--demo-model exp/tiny_wavlm_conformer/checkpoints/epoch_0001/model.pt] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench_pruned import architectures  # the Base+ and s80 WavLM configs (benchmarks/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]

DEMO_CONFIG = REPO / "conf" / "tiny_wavlm_conformer.toml"
DEMO_MODEL = REPO / "exp" / "tiny_wavlm_conformer" / "avg_best_3.pt"
DEMO_TEST = REPO / "data" / "synth" / "test"
DEMO_PIPELINE = REPO / "conf" / "diarization" / "fbank_stats_ahc.toml"
WINDOW_SECONDS = 8.0
INT8_DER_TARGET = 1.0


def median_seconds(runs: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs interleaved (so that a change of load on a shared machine hits them
    alike)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(warmup + repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def speed(name: str, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    """Seconds per 8 s window for torch, ONNX float32 and ONNX int8, and the export's log-prob differences."""
    from diarizen_lab.data.task import Task
    from diarizen_lab.export.onnx import export_onnx, inference_session
    from diarizen_lab.models.wavlm_conformer import WavLMConformer

    torch.manual_seed(0)
    model = WavLMConformer(wavlm=architectures()[name].to_dict(), task=Task(chunk_size=WINDOW_SECONDS)).eval()
    report = export_onnx(model, folder / f"{name}.onnx", int8=True)
    window = 0.1 * torch.randn(1, 1, int(WINDOW_SECONDS * 16000), generator=torch.Generator().manual_seed(1))
    feed = {"waveforms": window.numpy()}
    sessions = {kind: inference_session(path, args.threads)
                for kind, path in (("onnx_fp32", report.path), ("onnx_int8", report.int8_path))}
    runs = {"torch": lambda: model(window), **{kind: (lambda s=s: s.run(None, feed)) for kind, s in sessions.items()}}
    with torch.inference_mode():
        seconds = median_seconds(runs, args.warmup, args.repeats)
    return {**{f"seconds_{kind}": value for kind, value in seconds.items()},
            "max_difference_fp32": report.max_difference, "max_difference_int8": report.int8_max_difference}


def demo_model(model: Path, train: bool) -> str | None:
    """Why the DER part cannot run (``None`` when ``model`` and the test set are there, trained if needed)."""
    if model.is_file() and (DEMO_TEST / "wav.scp").is_file():
        return None
    if model != DEMO_MODEL:
        return f"no model {model} or no test set {DEMO_TEST}"
    if not train:
        return f"no demo model {DEMO_MODEL.relative_to(REPO)} (run `make demo`, or drop --no-train)"
    print(f"bench_export: {DEMO_MODEL.relative_to(REPO)} is missing: training it as `make demo` does", flush=True)
    command = [sys.executable, str(REPO / "recipes" / "diar_ssl" / "run_stage.py"), "-C", str(DEMO_CONFIG),
               "--stop-stage", "3"]
    if subprocess.run(command, cwd=REPO).returncode != 0 or not DEMO_MODEL.is_file():
        return f"training the demo model failed ({' '.join(command[1:])})"
    return None


def demo_der(model: Path, folder: Path) -> dict[str, float]:
    """DER % (collar 0) of the demo model on the synthetic test set for torch, ONNX float32 and ONNX int8."""
    from diarizen_lab.config import load_config
    from diarizen_lab.data.wav_scp import read_wav_scp
    from diarizen_lab.evaluation.pipeline import DiarizationConfig, build_pipeline, diarize_file
    from diarizen_lab.evaluation.rttm import write_rttm
    from diarizen_lab.evaluation.score import score_files
    from diarizen_lab.export.onnx import export_onnx
    from diarizen_lab.models import load_model

    settings = load_config(DEMO_PIPELINE, {"diarization": DiarizationConfig})["diarization"]
    report = export_onnx(load_model(model), folder / "demo.onnx", int8=True)
    recordings = read_wav_scp(DEMO_TEST / "wav.scp")
    uem = DEMO_TEST / "uem" if (DEMO_TEST / "uem").is_file() else None
    ders = {}
    for kind, model_file in (("torch", model), ("onnx_fp32", report.path), ("onnx_int8", report.int8_path)):
        pipeline = build_pipeline(load_model(model_file), settings)
        out = folder / f"rttm_{kind}"
        for uri, audio in recordings.items():
            write_rttm(out / f"{uri}.rttm", diarize_file(pipeline, audio, uri=uri), uri)
        ders[kind] = score_files(DEMO_TEST / "rttm", out, uem, collar=0.0).overall.der
        print(f"DER {kind}: {ders[kind]:.2f} %", flush=True)
    return ders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime CPU threads (default 1)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--parts", nargs="+", choices=["speed", "der"], default=["speed", "der"])
    parser.add_argument("--no-train", action="store_true", help="skip the DER part when the demo model is missing")
    parser.add_argument("--demo-model", type=Path, default=DEMO_MODEL,
                        help=f"model of the DER part (default {DEMO_MODEL.relative_to(REPO)}, trained if missing)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("bench_export: skipped: onnxruntime is not installed (pip install -e '.[export]')")
        sys.exit(77)

    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("base_plus", "s80") if "speed" in args.parts else ():
            raw[name] = figures = speed(name, Path(tmp), args)
            print(f"{name}: s per 8 s window: torch {figures['seconds_torch']:.3f}, onnx fp32 "
                  f"{figures['seconds_onnx_fp32']:.3f}, onnx int8 {figures['seconds_onnx_int8']:.3f}", flush=True)
            for kind in ("onnx_fp32", "onnx_int8"):
                rows.append({"name": f"torch / {kind.replace('_', ' ')}, s per 8 s window, {name}",
                             "value": figures["seconds_torch"] / figures[f"seconds_{kind}"], "unit": "x"})
            rows += [{"name": f"{kind.replace('_', ' ')}, s per 8 s window, {name}",
                      "value": figures[f"seconds_{kind}"], "unit": "s"} for kind in ("torch", "onnx_fp32", "onnx_int8")]
            rows.append({"name": f"max log-prob difference to torch, int8, {name}",
                         "value": figures["max_difference_int8"]})
        why_not = demo_model(args.demo_model, train=not args.no_train) if "der" in args.parts else "not asked for"
        if why_not is None:
            raw["demo_der"] = ders = demo_der(args.demo_model, Path(tmp))
            rows += [{"name": f"DER collar 0, demo model, {kind.replace('_', ' ')}", "value": value, "unit": "%"}
                     for kind, value in ders.items()]
            gap = ders["onnx_int8"] - ders["torch"]
            rows.append({"name": "DER int8 - DER torch, demo model", "value": gap, "unit": "points",
                         "target": f"<= {INT8_DER_TARGET:g}", "ok": gap <= INT8_DER_TARGET})
        else:
            print(f"bench_export: DER part skipped: {why_not}")
    if args.json:
        settings = {"threads": args.threads, "warmup": args.warmup, "repeats": args.repeats, "batch": 1,
                    "demo_model": str(args.demo_model)}
        with open(args.json, "w") as f:
            json.dump({"benchmark": "export", "results": rows, "settings": settings, "raw": raw}, f, indent=2)


if __name__ == "__main__":
    main()
