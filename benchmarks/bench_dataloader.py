"""Data loading speed of ChunkDataset against bare soundfile reads of the same chunks.

Prints the time ratio (dataset item = audio read + labels, vs ``soundfile.read`` of the same samples; target
<= 1.3x) and chunks/s through a DataLoader with 0 and 2 workers. Without ``--data``, a 10-minute synthetic
corpus is generated in a temporary directory and its train split is used.

    python benchmarks/bench_dataloader.py [--data DIR] [--chunks 1000] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Subset

from diarizen_lab.data.dataset import ChunkDataset, collate
from diarizen_lab.data.task import Task
from diarizen_lab.data.frames import FrameGeometry
from diarizen_lab.data.synth import synthesize_corpus

RATIO_TARGET = 1.3


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="data directory (default: synthetic corpus, train split)")
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--chunk-size", type=float, default=8.0)
    parser.add_argument("--chunk-shift", type=float, default=0.4)
    parser.add_argument("--repeats", type=int, default=5, help="timings keep the fastest of these runs")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file (benchmarks/README.md)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            start = time.perf_counter()
            synthesize_corpus(Path(tmp) / "synth", minutes=10, seed=0)
            print(f"generated a 10-minute synthetic corpus in {time.perf_counter() - start:.1f} s")
            data = Path(tmp) / "synth" / "train"

        from pyannote.audio.models.segmentation import PyanNet

        frames = FrameGeometry.from_model(PyanNet(sample_rate=16000), args.chunk_size)
        task = Task(chunk_size=args.chunk_size, max_speakers_per_chunk=3)
        dataset = ChunkDataset(data, args.chunk_shift, task=task, frames=frames)
        indices = np.random.default_rng(0).permutation(len(dataset))[: args.chunks].tolist()
        chunks = Subset(dataset, indices)
        reads = [
            (str(recording.path), start, end - start) for recording, start, end in map(dataset.chunk, indices)
        ]

        def bare() -> None:
            for path, start, size in reads:
                sf.read(path, start=start, frames=size, dtype="float32", always_2d=True)

        def ours() -> None:
            for i in range(len(chunks)):
                chunks[i]

        bare(), ours()  # warm the page cache
        # interleaved runs, fastest of each: robust to other processes on the machine
        runs = [(seconds(bare), seconds(ours)) for _ in range(args.repeats)]
        bare_s, ours_s = min(run[0] for run in runs), min(run[1] for run in runs)
        print(f"{len(chunks)} chunks of {args.chunk_size} s ({frames.num_frames} frames, 3 speakers) from {data}")
        print(f"soundfile.read: {bare_s * 1e3 / len(chunks):.3f} ms/chunk")
        print(f"ChunkDataset:   {ours_s * 1e3 / len(chunks):.3f} ms/chunk (read + labels)")
        print(f"ratio: {ours_s / bare_s:.2f}x (target <= {RATIO_TARGET}x)")
        results = [
            {"name": "ChunkDataset item / soundfile.read", "value": ours_s / bare_s, "unit": "x",
             "target": f"<= {RATIO_TARGET}", "ok": ours_s / bare_s <= RATIO_TARGET},
            {"name": "soundfile.read", "value": bare_s * 1e3 / len(chunks), "unit": "ms/chunk"},
            {"name": "ChunkDataset item", "value": ours_s * 1e3 / len(chunks), "unit": "ms/chunk"},
        ]
        for workers in (0, 2):
            loader = DataLoader(chunks, batch_size=32, num_workers=workers, collate_fn=collate,
                                persistent_workers=workers > 0)
            next(iter(loader))  # start the workers outside the timing
            fastest = min(seconds(lambda: list(loader)) for _ in range(args.repeats))
            print(f"DataLoader num_workers={workers}: {len(chunks) / fastest:.0f} chunks/s")
            results.append({"name": f"DataLoader, {workers} workers", "value": len(chunks) / fastest,
                            "unit": "chunks/s"})
    if args.json:
        settings = {"chunks": len(chunks), "chunk_size": args.chunk_size, "repeats": args.repeats,
                    "data": str(args.data) if args.data else "synthetic, 10 minutes"}
        args.json.write_text(json.dumps({"benchmark": "dataloader", "results": results, "settings": settings},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
