"""Speed-up of the pruned WavLM: Base+ against the published 80%-sparsity DiariZen architecture ("s80").

Both encoders get random weights (speed does not depend on the values). For each, prints the parameter count,
the multiply-accumulates per second of audio (``diarizen_lab.pruning.complexity``; for 1 s and for 8 s inputs,
which differ by the attention-score term) and the CPU time of one forward pass over an 8 s chunk (median of
``--repeats`` runs after ``--warmup`` runs, ``torch.inference_mode``, batch 1). Targets: about 94.4M vs 18.9M
parameters, 6.9G vs 1.1G MAC/s, and s80 at least 3.5x faster than Base+.

    python benchmarks/bench_pruned.py [--threads 1] [--repeats 10] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

#: The DiariZen 80%-sparsity pruned WavLM Base+: convolution channels, heads and feed-forward widths per layer.
S80 = {
    "conv_channels": [90, 161, 173, 181, 351, 155, 137],
    "num_heads": [2, 3, 3, 5, 2, 1, 4, 4, 0, 0, 2, 1],
    "ffn_dims": [666, 660, 649, 1080, 237, 299, 437, 573, 53, 80, 211, 334],
}
CHUNK_SECONDS = 8.0
SAMPLE_RATE = 16000
SPEEDUP_TARGET = 3.5


def architectures():
    from diarizen_lab.models.wavlm import WavLMConfig, get_preset

    base_plus = get_preset("wavlm_base_plus")
    conv_layers = [(c, kernel, stride) for c, (_, kernel, stride) in zip(S80["conv_channels"], base_plus.conv_layers)]
    s80 = WavLMConfig(conv_layers=conv_layers, num_heads=S80["num_heads"], ffn_dims=S80["ffn_dims"])
    return {"base_plus": base_plus, "s80": s80}


def forward_seconds(model: torch.nn.Module, waveforms: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    times = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            start = time.perf_counter()
            model(waveforms)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from diarizen_lab.models.wavlm import WavLM
    from diarizen_lab.pruning.complexity import full_keep, mac_counts, param_counts

    waveforms = torch.randn(1, int(CHUNK_SECONDS * SAMPLE_RATE))
    results = {}
    for name, config in architectures().items():
        model = WavLM(config).eval()
        params = sum(p.numel() for p in model.parameters())
        keep = full_keep(config)
        assert params == float(sum(param_counts(config, keep).values()))
        times = forward_seconds(model, waveforms, args.warmup, args.repeats)
        results[name] = {
            "params": params,
            "gmacs_per_second_1s_input": float(sum(mac_counts(config, keep, 1.0).values())) / 1e9,
            "gmacs_per_second_8s_input": float(sum(mac_counts(config, keep, CHUNK_SECONDS).values())) / 1e9,
            "seconds_per_8s_chunk_median": statistics.median(times),
            "seconds_per_8s_chunk_min": min(times),
        }
        del model

    speedup = results["base_plus"]["seconds_per_8s_chunk_median"] / results["s80"]["seconds_per_8s_chunk_median"]
    print(f"{'model':<10} {'params':>10} {'GMAC/s (1 s)':>13} {'GMAC/s (8 s)':>13} {'s / 8 s chunk':>14}")
    for name, row in results.items():
        print(f"{name:<10} {row['params'] / 1e6:9.2f}M {row['gmacs_per_second_1s_input']:13.3f} "
              f"{row['gmacs_per_second_8s_input']:13.3f} {row['seconds_per_8s_chunk_median']:14.4f}")
    verdict = "meets" if speedup >= SPEEDUP_TARGET else "misses"
    print(f"s80 is {speedup:.2f}x faster than Base+ on {args.threads} CPU thread(s) "
          f"({verdict} the {SPEEDUP_TARGET}x target)")
    if args.json:
        rows = [{"name": "Base+ / s80, seconds per 8 s chunk (median)", "value": speedup, "unit": "x",
                 "target": f">= {SPEEDUP_TARGET:g}", "ok": speedup >= SPEEDUP_TARGET}]
        for name, row in results.items():
            rows += [
                {"name": f"parameters, {name}", "value": row["params"] / 1e6, "unit": "M"},
                {"name": f"MACs per second of audio (1 s input), {name}", "value": row["gmacs_per_second_1s_input"],
                 "unit": "G"},
                {"name": f"MACs per second of audio (8 s input), {name}", "value": row["gmacs_per_second_8s_input"],
                 "unit": "G"},
                {"name": f"forward pass on an 8 s chunk (median), {name}", "value": row["seconds_per_8s_chunk_median"],
                 "unit": "s"},
                {"name": f"forward pass on an 8 s chunk (min), {name}", "value": row["seconds_per_8s_chunk_min"],
                 "unit": "s"},
            ]
        settings = {"threads": args.threads, "warmup": args.warmup, "repeats": args.repeats, "batch": 1}
        with open(args.json, "w") as f:
            json.dump({"benchmark": "pruned", "results": rows, "settings": settings, "models": results}, f, indent=2)

if __name__ == "__main__":
    main()
