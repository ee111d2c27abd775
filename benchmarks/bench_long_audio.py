"""Long-recording inference at the default settings: time per stage, embeddings, peak memory, real-time factor.

Runs ``build_pipeline`` + ``diarize_file`` with the default ``DiarizationConfig`` (step 0.1, 11-frame median
filter, WeSpeaker ResNet34 embeddings, agglomerative clustering; one VBx run too) on a synthetic meeting looped
to 0.5, 1, 2 and 4 hours. Each run is a fresh subprocess; it reports the seconds of each stage (segmentation,
embeddings, clustering, reconstruction), the number of embeddings clustered, its peak resident memory
(``ru_maxrss``) and the real-time factor. Targets: peak RSS at 4 h below 3 GiB, and at most 0.3 GiB of growth
from 1 h to 4 h once the 3 extra hours of float32 waveform (0.64 GiB) are taken off.

Models (random weights, real sizes where it matters): the ResNet34 that pyannote.audio builds, and for the
CPU runs the tiny WavLM-Conformer as segmentation model (its memory and time are small next to the rest); the
cost of a Base+ and of an s80 window is measured separately and the full-model time is extrapolated from it
(labelled so). Segmentation windows are 8 s (the released models' chunk). A random-weight model finds few
speakers, hence few embeddings to cluster; ``--model`` takes a trained segmentation model file instead (the
demo's ``exp/tiny_wavlm_conformer/avg_best_3.pt`` keeps about 7,500 embeddings per hour of the loop), for
clustering times at a realistic number of embeddings.

How a 2-core machine runs 7.5 hours of audio at step 0.1 (about 34,000 ResNet34 windows, ~0.2 s each): the
audio is a loop whose period is a whole number of segmentation steps, so every window after the first period
has exactly the audio of a window of the first period. Both models memoize their outputs by the bytes of
their input (the window's samples, and for embeddings its speaker masks too): a repeated window gets the
output the model gave for the same bytes, which is what the model would compute again, so the pipeline's
arrays, clustering and result are those of a full run. The memo is kept on disk from one run to the next, so
only the first run computes the whole loop. Memory is not extrapolated: every array of every stage is the full
run's, and the models' own activations do occur at the run's peak: each run computes its last segmentation
batch for real (the segmentation outputs are then largest) and its last embedding batch (embeddings fill a
preallocated array, so every batch sees the full-size state). Time is: a stage's measured seconds plus, for
each replayed window, the mean seconds the model took per computed window (``extrapolated``). ``--no-replay``
computes every window, to check that replaying changes no memory figure.

    python benchmarks/bench_long_audio.py [--hours 0.5 1 2 4] [--vbx-hours 1] [--threads 2] [--json out.json]
    python benchmarks/bench_long_audio.py --model exp/tiny_wavlm_conformer/avg_best_3.pt   # after make demo
    python benchmarks/bench_long_audio.py --device cuda     # real-size models, 1 h, no replay (exit 77 on CPU)
"""

from __future__ import annotations

import argparse
import hashlib
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
WINDOW_SECONDS = 8.0
DEFAULT_HOURS = (0.5, 1.0, 2.0, 4.0)
PEAK_RSS_TARGET_GIB = 3.0
GROWTH_TARGET_GIB = 0.3
"""Largest accepted growth of the peak RSS from 1 h to 4 h, net of the extra float32 waveform."""
SKIPPED = 77


def waveform_gib(hours: float) -> float:
    return hours * 3600 * SAMPLE_RATE * 4 / 2**30


def write_loop(folder: Path, loop_minutes: float, step_samples: int) -> np.ndarray:
    """One synthetic meeting (16-bit samples) cut to a whole number of segmentation steps."""
    from diarizen_lab.data.synth import synthesize_corpus

    synthesize_corpus(folder / "synth", minutes=loop_minutes / 0.8, seed=0, meeting_minutes=loop_minutes)
    meeting = sf.read(sorted((folder / "synth" / "train" / "wav").glob("*.wav"))[0], dtype="int16")[0]
    return meeting[: len(meeting) // step_samples * step_samples]


class Memo:
    """Memoizes a model call per input window by the bytes of that window (see the module docstring).

    The outputs are kept in ``path`` (``.npz``) between runs: only the first run computes the whole loop, the
    others compute their last ``force_real_last`` windows (where the run's arrays are largest) and replay the
    rest, so every run still holds the model's activations at its peak.
    """

    def __init__(self, compute, path: Path, num_windows: int, force_real_last: int, replay: bool = True):
        self.compute, self.path, self.replay = compute, path, replay
        self.force_real_after = max(0, num_windows - force_real_last)
        self.cache: dict[bytes, np.ndarray] = {}
        if replay and path.is_file():
            with np.load(path) as stored:
                self.cache = {bytes.fromhex(key): stored[key] for key in stored.files}
        self.windows = self.computed = 0
        self.seconds = 0.0

    def __call__(self, keys: list[bytes], *inputs) -> list[np.ndarray]:
        forced = not self.replay or self.windows + len(keys) > self.force_real_after
        self.windows += len(keys)
        missing = [i for i, key in enumerate(keys) if forced or key not in self.cache]
        if missing:
            start = time.perf_counter()
            outputs = np.asarray(self.compute(*(x[missing] for x in inputs)))
            self.seconds += time.perf_counter() - start
            self.computed += len(missing)
            if not self.replay:
                return list(outputs)
            for i, output in zip(missing, outputs):
                self.cache.setdefault(keys[i], output)
        return [self.cache[key] for key in keys]

    def save(self) -> None:
        if self.replay:
            np.savez(self.path, **{key.hex(): value for key, value in self.cache.items()})

    @property
    def replay_seconds(self) -> float:
        """Model seconds the replayed windows would have taken at the measured mean per computed window."""
        return (self.windows - self.computed) * self.seconds / max(self.computed, 1)


def current_rss_gib() -> float:
    """This process's resident memory now (Linux ``/proc/self/statm``)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**30


def digest(*arrays) -> bytes:
    return hashlib.blake2b(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays), digest_size=16).digest()


def memoize_models(pipeline, cache: Path, num_windows: int, replay: bool = True) -> tuple[Memo, Memo]:
    """Route the segmentation model's forward and the pipeline's ``embed_chunks`` through :class:`Memo`
    (``replay=False``: every window computed, the memos only time the model calls)."""
    import torch

    model, config = pipeline._segmentation.model, pipeline.config
    segmentation = Memo(lambda w: type(model).forward(model, w).numpy(), cache / "segmentation.npz", num_windows,
                        force_real_last=config.segmentation_batch_size, replay=replay)

    def forward(waveforms: torch.Tensor) -> torch.Tensor:
        keys = [digest(w.numpy()) for w in waveforms]
        return torch.from_numpy(np.stack(segmentation(keys, waveforms)))

    model.forward = forward
    windows_per_batch = max(1, config.embedding_batch_size // len(model.specifications.classes))
    embeddings = Memo(pipeline.embed_chunks, cache / "embeddings.npz", num_windows, force_real_last=windows_per_batch,
                      replay=replay)

    def embed_chunks(waveforms: torch.Tensor, masks: np.ndarray) -> np.ndarray:
        keys = [digest(w.numpy(), m) for w, m in zip(waveforms, masks)]
        return np.stack(embeddings(keys, waveforms, masks))

    pipeline.embed_chunks = embed_chunks
    return segmentation, embeddings


def time_stages(pipeline) -> dict[str, float]:
    """Wall-clock marks around the stages of ``SpeakerDiarization.apply`` (clustering runs between the end of
    the embeddings and the first reconstruction), the peak RSS so far and the RSS at the end of each, and the
    number of embeddings clustered."""
    marks: dict[str, float] = {}

    def timed(name: str, method):
        def wrapper(*args, **kwargs):
            marks.setdefault(f"{name}_start", time.perf_counter())
            result = method(*args, **kwargs)
            marks[f"{name}_end"] = time.perf_counter()
            marks[f"peak_rss_gib_after_{name}"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            marks[f"rss_gib_after_{name}"] = current_rss_gib()
            return result
        return wrapper

    def counted(method):
        def wrapper(*args, **kwargs):
            result = method(*args, **kwargs)
            marks["embeddings_clustered"] = len(result[0])
            return result
        return wrapper

    for name in ("get_segmentations", "get_embeddings", "reconstruct"):
        setattr(pipeline, name, timed(name, getattr(pipeline, name)))
    pipeline.clustering.filter_embeddings = counted(pipeline.clustering.filter_embeddings)
    return marks


def segmentation_model(name: str):
    from diarizen_lab.data.task import Task
    from diarizen_lab.models.wavlm_conformer import WavLMConformer

    if name == "tiny":
        return WavLMConformer(wavlm="random:wavlm_tiny", task=Task()).eval()
    from bench_pruned import architectures

    return WavLMConformer(wavlm=architectures()[name].to_dict(), task=Task()).eval()


def window_seconds(model_name: str, threads: int, repeats: int = 2) -> float:
    """Median seconds of one 8 s window through the segmentation model (batch 1, after one warm-up)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, window = segmentation_model(model_name), torch.randn(1, 1, int(WINDOW_SECONDS * SAMPLE_RATE))
    times = []
    with torch.inference_mode():
        for index in range(repeats + 1):
            start = time.perf_counter()
            model(window)
            if index:
                times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(args: argparse.Namespace, audio: Path, clustering: str, plda: Path | None, cache: Path) -> dict:
    """Diarize ``audio`` in this process (call once per fresh process)."""
    import dataclasses

    import torch
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    from diarizen_lab.evaluation.pipeline import DiarizationConfig, build_pipeline, diarize_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cuda = args.device == "cuda"
    config = dataclasses.replace(DiarizationConfig(), clustering=clustering, plda=str(plda or "plda"),
                                 window=WINDOW_SECONDS)
    if args.embedding_batch_size:
        config = dataclasses.replace(config, embedding_batch_size=args.embedding_batch_size)
    if args.model:
        from diarizen_lab.models import load_model

        model = load_model(args.model)
    else:
        model = segmentation_model(args.segmentation if cuda else "tiny")
    pipeline = build_pipeline(model, config, embedding=WeSpeakerResNet34().eval(), device=args.device)
    duration = sf.info(str(audio)).duration
    num_windows = int((duration - WINDOW_SECONDS) // (config.step_ratio * WINDOW_SECONDS)) + 1
    memos = None if cuda else memoize_models(pipeline, cache, num_windows, replay=not args.no_replay)
    marks = time_stages(pipeline)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    diarization = diarize_file(pipeline, audio)
    end = time.perf_counter()
    stages = {
        "segmentation": marks["get_segmentations_end"] - start,
        "embeddings": marks["get_embeddings_end"] - marks["get_embeddings_start"],
        "clustering": marks["reconstruct_start"] - marks["get_embeddings_end"],
        "reconstruction": end - marks["reconstruct_start"],
    }
    run = {
        "clustering": clustering, "hours": duration / 3600, "windows": num_windows,
        "embeddings_clustered": marks["embeddings_clustered"], "speakers": len(diarization.labels()),
        "diarization_digest": hashlib.blake2b(diarization.to_rttm().encode(), digest_size=8).hexdigest(),
        "seconds": stages, "total_seconds": end - start,
        "peak_rss_gib_by_stage": {key.removeprefix("peak_rss_gib_after_"): value for key, value in marks.items()
                                  if key.startswith("peak_rss_gib_after_")},
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rss_gib_by_stage": {key.removeprefix("rss_gib_after_"): value for key, value in marks.items()
                             if key.startswith("rss_gib_after_")},
        "rss_before_diarization_gib": rss_before,
    }
    if cuda:
        run["segmentation_model"] = str(args.model) if args.model else args.segmentation
        run["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        segmentation, embeddings = memos
        segmentation.save()
        embeddings.save()
        run["windows_computed"] = {"segmentation": segmentation.computed, "embeddings": embeddings.computed}
        run["model_seconds_per_window"] = {
            "segmentation": segmentation.seconds / segmentation.computed,
            "embeddings": embeddings.seconds / embeddings.computed,
        }
        run["extrapolated_seconds"] = {**stages, "segmentation": stages["segmentation"] + segmentation.replay_seconds,
                                       "embeddings": stages["embeddings"] + embeddings.replay_seconds}
    return run


def run_child(args: argparse.Namespace, audio: Path, clustering: str, plda: Path | None) -> dict:
    command = [sys.executable, __file__, "--child", str(audio), clustering, str(plda or ""), str(audio.parent),
               "--threads", str(args.threads), "--device", args.device, "--segmentation", args.segmentation,
               "--embedding-batch-size", str(args.embedding_batch_size or 0)]
    if args.model:
        command += ["--model", str(args.model)]
    if args.no_replay:
        command.append("--no-replay")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{clustering} on {audio.name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_random_plda(folder: Path, dimension: int = 256, lda_dimension: int = 128) -> Path:
    """A random PLDA of the released size (256-d ResNet34 embeddings, 128 LDA dimensions), pyannote's format."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    lda, _ = np.linalg.qr(rng.normal(size=(dimension, lda_dimension)))
    np.savez(folder / "xvec_transform.npz", mean1=np.zeros(dimension), mean2=np.zeros(lda_dimension), lda=lda)
    np.savez(folder / "plda.npz", mu=np.zeros(lda_dimension), tr=np.eye(lda_dimension),
             psi=np.linspace(5.0, 0.5, lda_dimension))
    return folder


def report(runs: list[dict], window_costs: dict[str, float]) -> list[dict]:
    """Print the per-stage table; return the headline rows of the ``--json`` convention."""
    results = []
    print(f"{'run':<12}{'windows':>8}{'embeddings':>11}{'segment.':>10}{'embed.':>9}{'cluster.':>10}{'reconst.':>10}"
          f"{'peak RSS':>10}{'RTF':>8}{'RTF full':>10}")
    for run in runs:
        label = f"{run['clustering']}, {run['hours']:g} h"
        extrapolated, measured = run["extrapolated_seconds"], run["seconds"]
        audio_seconds = run["hours"] * 3600
        rtf = sum(extrapolated.values()) / audio_seconds
        print(f"{label:<12}{run['windows']:>8}{run['embeddings_clustered']:>11}"
              + "".join(f"{extrapolated[s]:>9.0f}s" if s != "clustering" else f"{measured[s]:>9.1f}s"
                        for s in ("segmentation", "embeddings", "clustering", "reconstruction"))
              + f"{run['peak_rss_gib']:>9.2f}G{rtf:>8.3f}", flush=True)
        results += [
            {"name": f"peak RSS, {label}", "value": run["peak_rss_gib"], "unit": "GiB",
             "target": f"< {PEAK_RSS_TARGET_GIB:g}", "ok": run["peak_rss_gib"] < PEAK_RSS_TARGET_GIB},
            {"name": f"embeddings clustered, {label}", "value": run["embeddings_clustered"], "unit": ""},
            {"name": f"clustering time, {label}", "value": measured["clustering"], "unit": "s"},
            {"name": f"real-time factor (tiny segmentation, extrapolated), {label}", "value": rtf, "unit": "x"},
            {"name": f"embedding share of time (tiny segmentation), {label}",
             "value": extrapolated["embeddings"] / sum(extrapolated.values()), "unit": "fraction"},
        ]
        for name, cost in window_costs.items():
            full = dict(extrapolated, segmentation=extrapolated["segmentation"] + run["windows"] * (
                cost - run["model_seconds_per_window"]["segmentation"]))
            results.append({"name": f"real-time factor ({name}, extrapolated), {label}",
                            "value": sum(full.values()) / audio_seconds, "unit": "x"})
    ahc = {run["hours"]: run["peak_rss_gib"] for run in runs if run["clustering"] == "ahc"}
    if 1.0 in ahc and 4.0 in ahc:
        growth = ahc[4.0] - ahc[1.0] - (waveform_gib(4.0) - waveform_gib(1.0))
        print(f"peak RSS growth 1 h -> 4 h net of the waveform: {growth:+.2f} GiB (target <= {GROWTH_TARGET_GIB})")
        results.append({"name": "peak RSS growth 1 h -> 4 h, net of the extra float32 waveform (ahc)",
                        "value": growth, "unit": "GiB", "target": f"<= {GROWTH_TARGET_GIB:g}",
                        "ok": growth <= GROWTH_TARGET_GIB})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, nargs="+", default=list(DEFAULT_HOURS),
                        help="recording lengths of the AHC runs (default: 0.5 1 2 4)")
    parser.add_argument("--vbx-hours", type=float, nargs="*", default=[1.0], help="lengths of the VBx runs")
    parser.add_argument("--loop-minutes", type=float, default=1.0, help="period of the looped meeting")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: real-size models (Base+ and s80, ResNet34) on 1 h, no replay")
    parser.add_argument("--segmentation", default="base_plus", choices=("base_plus", "s80"), help=argparse.SUPPRESS)
    parser.add_argument("--embedding-batch-size", type=int, default=0,
                        help="override DiarizationConfig's embedding_batch_size (default: keep it)")
    parser.add_argument("--model", type=Path,
                        help="a trained segmentation model file instead of the random-weight tiny one (e.g. the "
                             "demo's exp/tiny_wavlm_conformer/avg_best_3.pt: realistic speakers per window)")
    parser.add_argument("--no-replay", action="store_true",
                        help="compute every window (no memo): hours of CPU time, to check the replayed runs' memory")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--child", nargs=4, metavar=("AUDIO", "CLUSTERING", "PLDA", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        audio, clustering, plda, cache = args.child
        print(json.dumps(measure(args, Path(audio), clustering, Path(plda) if plda else None, Path(cache))))
        return
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("bench_long_audio: skipped: --device cuda but no CUDA GPU is visible", flush=True)
            sys.exit(SKIPPED)
        args.hours, args.vbx_hours = [1.0], []

    step_samples = round(0.1 * WINDOW_SECONDS * SAMPLE_RATE)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        loop = write_loop(folder, args.loop_minutes, step_samples)
        plda = write_random_plda(folder / "plda")
        print(f"settings: DiarizationConfig() defaults, 8 s windows, {args.threads} threads, {args.device}, "
              f"segmentation {args.model or 'tiny (random weights)'}{', no replay' if args.no_replay else ''}; "
              f"loop of {len(loop) / SAMPLE_RATE:.0f} s", flush=True)
        plan = [("ahc", hours) for hours in args.hours] + [("vbx", hours) for hours in args.vbx_hours]
        models = ("base_plus", "s80") if args.device == "cuda" and not args.model else ("tiny",)
        for clustering, hours in plan:
            audio = folder / f"meeting_{hours:g}h.wav"
            sf.write(audio, np.resize(loop, round(hours * 3600 * SAMPLE_RATE)), SAMPLE_RATE, subtype="PCM_16")
            for model in models:
                args.segmentation = model if args.device == "cuda" else args.segmentation
                run = run_child(args, audio, clustering, plda if clustering == "vbx" else None)
                runs.append(run)
                print(f"{clustering} {hours:g} h: {json.dumps(run)}", flush=True)
            audio.unlink()
    if args.device == "cuda":
        results = [row for run in runs for row in (
            {"name": f"real-time factor, {run['segmentation_model']}, 1 h", "value": run["total_seconds"] / 3600,
             "unit": "x"},
            {"name": f"peak GPU memory, {run['segmentation_model']}, 1 h", "value": run["peak_gpu_memory_gib"],
             "unit": "GiB"},
        )]
        window_costs = {}
    else:
        window_costs = {name: window_seconds(name, args.threads) for name in ("base_plus", "s80")}
        print("segmentation model seconds per 8 s window: "
              + ", ".join(f"{name} {cost:.2f}" for name, cost in window_costs.items()))
        results = report(runs, window_costs)
    if args.json:
        args.json.write_text(json.dumps({
            "benchmark": "long_audio", "results": results,
            "settings": {"config": "DiarizationConfig() defaults, 8 s windows",
                         "segmentation": str(args.model) if args.model else "tiny, random weights (CPU)",
                         "embedding": "WeSpeaker ResNet34, random weights", "threads": args.threads,
                         "device": args.device, "loop_seconds": len(loop) / SAMPLE_RATE,
                         "replayed": not args.no_replay},
            "window_seconds": window_costs, "runs": runs,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
