"""Overhead of the trainer over a bare PyTorch loop, on the same model and batches (CPU).

Both loops train one tiny WavLM-Conformer (the same instance, with the same dual AdamW optimizers), the powerset
loss and max-norm clipping on identical in-memory batches; the trainer adds its data loader, accelerate,
schedules, the non-finite check, progress bar and bookkeeping. Prints seconds per update for each and their ratio
(target <= 1.05x). Epoch times drift by tens of percent within a minute on a shared machine, so each loop runs
``--repeats`` epochs, interleaved (AB BA AB ...) after one warm-up epoch each, and the ratio is the median of the
ratios of the two epochs run back to back.

    python benchmarks/bench_trainer.py [--batches 12] [--batch-size 4] [--chunk-size 4] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from diarizen_lab.config import Block
from diarizen_lab.data.random_chunks import RandomChunks
from diarizen_lab.data.task import Task
from diarizen_lab.models.wavlm_conformer import WavLMConformer
from diarizen_lab.training.clipping import GradientClipper
from diarizen_lab.training.loaders import EpochLoader, validation_loader
from diarizen_lab.training.loop import Trainer
from diarizen_lab.training.loss import powerset_nll
from diarizen_lab.training.objective import PowersetObjective
from diarizen_lab.training.optim import build_optimizers
from diarizen_lab.training.recipe import build_accelerator
from diarizen_lab.training.settings import (
    CheckpointSettings,
    ClippingSettings,
    DataLoaderSettings,
    ScheduleSettings,
    TrainerSettings,
)


def build_model(task: Task) -> WavLMConformer:
    torch.manual_seed(0)
    return WavLMConformer(
        wavlm="random:wavlm_tiny", task=task, attention_in=64, ffn_hidden=128, num_heads=4, num_layers=2,
        kernel_size=15,
    )


#: the dual AdamW optimizers of the recipe, by config section
OPTIMIZERS = {
    "optimizer_small": Block("torch.optim.AdamW", {"lr": 2e-5}),
    "optimizer_big": Block("torch.optim.AdamW", {"lr": 1e-3}),
    "scheduler_small": ScheduleSettings("warmup_cosine", warmup_steps=10),
    "scheduler_big": ScheduleSettings("warmup_cosine", warmup_steps=10),
}


def bare_epoch(model, optimizers, powerset, batches) -> None:
    for batch in batches:
        loss = powerset_nll(model(batch["waveform"]), batch["labels"], powerset)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=12, help="updates per timed epoch")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--chunk-size", type=float, default=4.0, help="seconds")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    task = Task(chunk_size=args.chunk_size)
    num_frames = build_model(task).num_frames(task.chunk_samples)
    dataset = RandomChunks(args.batches * args.batch_size, task.chunk_samples, num_frames)
    loaders = DataLoaderSettings(batch_size=args.batch_size, persistent_workers=False)

    # both loops train the same model with the same optimizers: they differ only by what the trainer adds
    settings = TrainerSettings(max_epochs=10**6)
    accelerator = build_accelerator(settings)
    model = build_model(task)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            accelerator=accelerator,
            model=accelerator.prepare_model(model),
            objective=PowersetObjective(task=task),
            optimizers=build_optimizers(OPTIMIZERS, model, 10**6, accelerator.device),
            clipper=GradientClipper(ClippingSettings(mode="fixed", max_norm=5.0)),
            train_loader=EpochLoader(dataset, loaders, seed=0),
            validation_loader=validation_loader(dataset, loaders),
            settings=settings,
            checkpoint=CheckpointSettings(),
            run_dir=Path(tmp),
        )
        # the bare loop: the same batches, already stacked
        powerset = task.powerset()
        optimizers = [named.optimizer for named in trainer.optimizers]
        batches = [
            {key: torch.stack([dataset[i][key] for i in range(start, start + args.batch_size)]) for key in dataset[0]}
            for start in range(0, len(dataset), args.batch_size)
        ]
        # warm-up, then alternate in the order AB BA AB BA ... so that drifting machine load and whatever one
        # loop leaves in the caches for the next affect both alike
        model.train()
        bare_epoch(model, optimizers, powerset, batches)
        trainer.train_epoch(1)
        bare, ours = [], []
        for repeat in range(args.repeats):
            for loop in ("bare", "trainer") if repeat % 2 == 0 else ("trainer", "bare"):
                if loop == "bare":
                    bare.append(timed(lambda: bare_epoch(model, optimizers, powerset, batches)))
                else:
                    ours.append(timed(lambda: trainer.train_epoch(2 + repeat)))

    result = {
        "bare_s_per_update": statistics.median(bare) / args.batches,
        "trainer_s_per_update": statistics.median(ours) / args.batches,
        "ratio": statistics.median(trainer / bare for trainer, bare in zip(ours, bare)),
        "batches": args.batches,
        "batch_size": args.batch_size,
        "chunk_size_s": args.chunk_size,
    }
    print(json.dumps(result, indent=2))
    print(f"trainer / bare loop: {result['ratio']:.3f}x (target <= 1.05x)")
    if args.json is not None:
        report = {
            "benchmark": "trainer",
            "results": [
                {"name": "trainer / bare loop, time per update", "value": round(result["ratio"], 3), "unit": "x",
                 "target": "<= 1.05", "ok": result["ratio"] <= 1.05},
                {"name": "trainer, time per update", "value": round(result["trainer_s_per_update"], 4), "unit": "s"},
                {"name": "bare loop, time per update", "value": round(result["bare_s_per_update"], 4), "unit": "s"},
            ],
            "settings": {"batches": args.batches, "batch_size": args.batch_size, "chunk_size_s": args.chunk_size,
                         "repeats": args.repeats, "threads": 1},
        }
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
