"""The benchmark harness: every script follows the ``--json`` convention and ``run_all`` reports what happened.

The benchmarks themselves measure speed and are not run here; ``make bench`` does that.
"""

import datetime
import importlib.util
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("bench_*.py"))


def load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", BENCHMARKS / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


run_all = load_run_all()


def write_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "bench_fake.py"
    script.write_text(textwrap.dedent(body))
    return script


def test_the_expected_benchmarks_exist():
    assert {script.stem for script in SCRIPTS} >= {
        "bench_dataloader", "bench_trainer", "bench_pruned", "bench_long_audio", "bench_gpu_train", "bench_export",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda script: script.stem)
def test_every_benchmark_accepts_json(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--json" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the benchmark would run")
def test_gpu_benchmark_without_a_gpu_says_so_and_is_skipped(tmp_path):
    output = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_gpu_train.py"), "--json", str(output)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == run_all.SKIPPED
    assert done.stdout.strip().splitlines()[-1] == (
        "bench_gpu_train: skipped: no CUDA GPU is visible (this benchmark needs one; it is not a test)"
    )
    assert not output.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the benchmark would run")
def test_long_audio_gpu_path_without_a_gpu_says_so_and_is_skipped(tmp_path):
    output = tmp_path / "long_audio.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_long_audio.py"), "--device", "cuda", "--json", str(output)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == run_all.SKIPPED
    assert done.stdout.strip().splitlines()[-1] == (
        "bench_long_audio: skipped: --device cuda but no CUDA GPU is visible"
    )
    assert not output.exists()


def test_run_benchmark_reads_the_rows_a_benchmark_wrote(tmp_path):
    script = write_script(tmp_path, """
        import json, sys
        rows = [{"name": "ratio", "value": 1.041, "unit": "x", "target": "<= 1.05", "ok": True}]
        print("measuring")
        json.dump({"results": rows, "settings": {"repeats": 3}}, open(sys.argv[2], "w"))
    """)
    outcome = run_all.run_benchmark(script, tmp_path / "out.json", timeout=60)
    assert outcome.name == "fake"
    assert outcome.status == "ok"
    assert outcome.report["results"][0]["value"] == 1.041
    assert outcome.report["settings"] == {"repeats": 3}


def test_run_benchmark_tells_skipped_from_failed(tmp_path):
    skipped = write_script(tmp_path, """
        import sys
        print("bench_fake: skipped: needs a GPU")
        sys.exit(77)
    """)
    outcome = run_all.run_benchmark(skipped, tmp_path / "out.json", timeout=60)
    assert (outcome.status, outcome.note) == ("skipped", "bench_fake: skipped: needs a GPU")

    failed = write_script(tmp_path, """
        import sys
        print("starting")
        print("bench_fake: the model did not load")
        sys.exit(3)
    """)
    outcome = run_all.run_benchmark(failed, tmp_path / "out.json", timeout=60)
    assert (outcome.status, outcome.note) == ("failed (exit 3)", "bench_fake: the model did not load")
    assert outcome.report == {}


def test_run_benchmark_stops_a_benchmark_that_hangs_while_silent(tmp_path):
    script = write_script(tmp_path, """
        import time
        print("started", flush=True)
        time.sleep(60)
    """)
    start = time.perf_counter()
    outcome = run_all.run_benchmark(script, tmp_path / "out.json", timeout=1)
    assert time.perf_counter() - start < 30
    assert (outcome.status, outcome.note) == ("failed", "stopped after 1 s")


def test_markdown_report_lists_figures_targets_and_misses():
    outcomes = [
        run_all.Outcome("trainer", "ok", 42.0, report={
            "results": [
                {"name": "ratio", "value": 1.041, "unit": "x", "target": "<= 1.05", "ok": True},
                {"name": "slow ratio", "value": 1.2, "unit": "x", "target": "<= 1.05", "ok": False},
                {"name": "seconds", "value": 0.25, "unit": "s"},
            ],
            "settings": {"repeats": 3},
        }),
        run_all.Outcome("gpu_train", "skipped", 7.0, note="bench_gpu_train: skipped: no GPU"),
    ]
    text = run_all.markdown(outcomes, {"CPU": "test CPU", "GPU": "none"}, datetime.datetime(2026, 1, 2, 3, 4))
    lines = text.splitlines()
    assert any("on 2026-01-02 03:04 (local time)" in line for line in lines)
    assert "| CPU | test CPU |" in lines
    assert "## trainer" in lines and "## gpu_train" in lines
    assert "Status: ok, 42 s" in lines
    assert "Settings: `repeats=3`" in lines
    assert "| ratio | 1.041 | x | <= 1.05 | yes |" in lines
    assert "| slow ratio | 1.2 | x | <= 1.05 | **no** |" in lines
    assert "| seconds | 0.25 | s |  |  |" in lines
    assert "Status: skipped, 7 s — bench_gpu_train: skipped: no GPU" in lines


def test_report_without_result_rows_lists_every_number():
    rows = run_all.result_rows({"speed": {"fp32": 10.5, "bf16": 21}, "device": "cpu", "ok": True})
    assert rows == [{"name": "speed.fp32", "value": 10.5}, {"name": "speed.bf16", "value": 21}]


def test_git_commit_marks_uncommitted_changes(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True)
    assert run_all.git_commit(tmp_path) == head.stdout.strip()
    (tmp_path / "results.md.tmp").write_text("partial")
    assert run_all.git_commit(tmp_path) == head.stdout.strip() + " (uncommitted changes)"


def test_long_audio_replay_gives_the_result_of_computing_every_window(tmp_path, monkeypatch):
    """The long-audio benchmark replays memoized model outputs for repeated windows: the diarization, the
    embeddings clustered and the stages' arrays must be those of a run that computes every window."""
    import argparse

    import numpy as np
    import soundfile as sf

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_long_audio as bench

    loop = bench.write_loop(tmp_path, loop_minutes=0.25, step_samples=12800)
    audio = tmp_path / "looped.wav"
    sf.write(audio, np.resize(loop, len(loop) * 3), bench.SAMPLE_RATE, subtype="PCM_16")
    runs = {}
    for replay in (True, False):
        args = argparse.Namespace(threads=1, device="cpu", segmentation="base_plus", embedding_batch_size=0,
                                  model=None, no_replay=not replay)
        (tmp_path / f"memo_{replay}").mkdir()
        runs[replay] = bench.measure(args, audio, "ahc", None, tmp_path / f"memo_{replay}")
    replayed, computed = runs[True], runs[False]
    assert computed["windows_computed"]["embeddings"] == computed["windows"]
    assert replayed["windows_computed"]["embeddings"] < computed["windows"] * 3 / 4  # the first period, the last batch
    for key in ("windows", "embeddings_clustered", "speakers", "diarization_digest"):
        assert replayed[key] == computed[key], key
