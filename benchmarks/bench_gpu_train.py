"""GPU training throughput of the WavLM Base+ WavLM-Conformer: fp32 against bf16 and the GPU switches.

Random weights and batches of 16 random 8 s chunks with random speaker activity; each step is the real training
step of the framework (powerset objective, dual AdamW over WavLM / other parameters, max-norm clipping). The
variants, each measured after warm-up steps in a fresh model:

  fp32            fp32 matmuls (TF32 off), foreach AdamW
  fp32+tf32       TF32 matmuls and convolutions
  bf16            bf16 autocast + TF32
  bf16+fused      bf16 autocast + TF32 + fused AdamW (what the trainer uses on CUDA)
  bf16+compile    the above with torch.compile (only with --compile: compilation takes minutes)

Prints samples/s, seconds per step and peak GPU memory per variant, and the speed-up over fp32. Without a GPU
it prints why and exits with status 77 (skipped).

    python benchmarks/bench_gpu_train.py [--steps 20] [--warmup 5] [--batch-size 16] [--compile] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from diarizen_lab.data.task import Task
from diarizen_lab.models.wavlm_conformer import WavLMConformer
from diarizen_lab.training.objective import PowersetObjective

SKIPPED = 77


def make_batch(model: WavLMConformer, batch_size: int, chunk_size: float, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    samples = int(chunk_size * model.hparams.sample_rate)
    frames = model.num_frames(samples)
    return {
        "waveform": (0.1 * torch.randn(batch_size, 1, samples, generator=generator)).to(device),
        "labels": (torch.rand(batch_size, frames, 4, generator=generator) > 0.7).float().to(device),
    }


def run_variant(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    bf16 = name.startswith("bf16")
    tf32 = name != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.cuda.empty_cache()  # the previous variant's model and optimizer states are gone with its frame
    torch.manual_seed(0)
    task = Task(chunk_size=args.chunk_size)
    model = WavLMConformer(wavlm="random:wavlm_base_plus", task=task).to(device).train()
    objective = PowersetObjective(task=task).to(device)
    fused = name in ("bf16+fused", "bf16+compile")
    optimizers = [
        torch.optim.AdamW(model.wavlm_parameters(), lr=2e-5, fused=fused),
        torch.optim.AdamW(model.non_wavlm_parameters(), lr=1e-3, fused=fused),
    ]
    step_model = torch.compile(model) if name == "bf16+compile" else model
    batch = make_batch(model, args.batch_size, args.chunk_size, device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = objective.training_step(step_model, batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    result = {
        "variant": name,
        "seconds_per_step": seconds,
        "samples_per_second": args.batch_size / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk-size", type=float, default=8.0)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu_train: skipped: no CUDA GPU is visible (this benchmark needs one; it is not a test)")
        return SKIPPED

    device = torch.device("cuda")
    variants = ["fp32", "fp32+tf32", "bf16", "bf16+fused"] + (["bf16+compile"] if args.compile else [])
    results = [run_variant(name, args, device) for name in variants]
    baseline = results[0]["samples_per_second"]
    print(f"{torch.cuda.get_device_name(0)}, batch {args.batch_size} x {args.chunk_size:g} s, WavLM Base+ Conformer")
    print(f"{'variant':<14} {'samples/s':>10} {'s/step':>8} {'peak GiB':>9} {'speed-up':>9}")
    for result in results:
        print(f"{result['variant']:<14} {result['samples_per_second']:10.1f} {result['seconds_per_step']:8.3f}"
              f" {result['peak_memory_gib']:9.2f} {result['samples_per_second'] / baseline:8.2f}x")
    if args.json:
        report = {
            "benchmark": "gpu_train",
            "results": [
                row
                for result in results
                for row in (
                    {"name": f"samples/s, {result['variant']}", "value": round(result["samples_per_second"], 1)},
                    {"name": f"peak GPU memory, {result['variant']}", "value": round(result["peak_memory_gib"], 2),
                     "unit": "GiB"},
                )
            ],
            "settings": {"device": torch.cuda.get_device_name(0), "batch_size": args.batch_size,
                         "chunk_size": args.chunk_size, "steps": args.steps, "warmup": args.warmup},
            "variants": results,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
