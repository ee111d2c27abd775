"""Run every ``benchmarks/bench_*.py`` in its own process and collect their figures in ``benchmarks/results.md``.

Each benchmark is called as ``python bench_X.py --json FILE`` (the convention of ``benchmarks/README.md``): its
output is shown as it runs, and the ``results`` rows of FILE become a table in the report, under a header with
the machine (CPU model, cores, memory, GPU, torch version) and the date. A benchmark that exits with status 77
could not run here (no GPU, ...) and is listed as skipped with the reason it printed last. The exit status is 1
when a benchmark failed.

    python benchmarks/run_all.py [--only long_audio pruned] [--output benchmarks/results.md]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIPPED = 77
"""Exit status of a benchmark that cannot run on this machine (automake's convention)."""


@dataclass
class Outcome:
    name: str
    status: str
    """``ok``, ``skipped`` or ``failed (exit N)``."""
    seconds: float
    report: dict = field(default_factory=dict)
    note: str = ""


def benchmark_scripts(only: list[str] | None) -> list[Path]:
    scripts = sorted(HERE.glob("bench_*.py"))
    if only:
        scripts = [script for script in scripts if script.stem.removeprefix("bench_") in only]
    return scripts


def run_benchmark(script: Path, json_path: Path, timeout: float | None) -> Outcome:
    """Run one benchmark, echoing its output; read the JSON it wrote."""
    name = script.stem.removeprefix("bench_")
    print(f"=== {name}: {script.name} --json {json_path}", flush=True)
    start = time.perf_counter()
    tail: deque[str] = deque(maxlen=5)
    # its own process group, so that a timeout or Ctrl-C also stops the data-loader workers it started
    process = subprocess.Popen(
        [sys.executable, str(script), "--json", str(json_path)], cwd=HERE.parent, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
    )
    stopped = threading.Event()

    def stop() -> None:
        stopped.set()
        _kill_group(process)

    # the deadline must hold while the loop below waits for output, hence a timer rather than wait(timeout)
    timer = threading.Timer(timeout, stop) if timeout is not None else None
    if timer is not None:
        timer.start()
    try:
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.strip():
                tail.append(line.strip())
        code = process.wait()
    finally:
        if timer is not None:
            timer.cancel()
        _kill_group(process)
    if stopped.is_set():
        return Outcome(name, "failed", time.perf_counter() - start, note=f"stopped after {timeout:g} s")
    seconds = time.perf_counter() - start
    last = tail[-1] if tail else ""
    if code == SKIPPED:
        return Outcome(name, "skipped", seconds, note=last)
    if code != 0:
        return Outcome(name, f"failed (exit {code})", seconds, note=last)
    if not json_path.is_file():
        return Outcome(name, "ok", seconds, note="wrote no JSON (see --json in benchmarks/README.md)")
    return Outcome(name, "ok", seconds, report=json.loads(json_path.read_text()))


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the process group of ``process`` (a benchmark and its workers), if anything in it still runs."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group has ended
        pass
    process.wait()


def result_rows(report: dict) -> list[dict]:
    """The ``results`` rows of a report; for a report without them, every number in it (dotted keys)."""
    if isinstance(report.get("results"), list):
        return report["results"]
    rows = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append({"name": prefix, "value": value})

    walk("", report)
    return rows


def machine() -> dict[str, str]:
    """CPU model, cores, memory, GPU and library versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "CPU": cpu,
        "cores": f"{os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))})",
        "memory": f"{memory:.1f} GiB",
        "GPU": ", ".join(gpus) or "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyannote.audio": importlib.metadata.version("pyannote.audio"),
        "OS": platform.platform(),
    }


def git_commit(folder: Path = HERE) -> str:
    """The short commit of the checkout holding ``folder``, marked when it has uncommitted changes."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True)
    except OSError:
        return "unknown"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True)
    dirty = bool(status.stdout.strip())
    return (done.stdout.strip() or "unknown") + (" (uncommitted changes)" if dirty else "")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return "" if value is None else str(value)


def markdown(outcomes: list[Outcome], info: dict[str, str], started: datetime.datetime) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `benchmarks/run_all.py` on {started:%Y-%m-%d %H:%M} (local time), commit {git_commit()}.",
        "What each benchmark measures and its target: `benchmarks/README.md`.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in info.items()),
        "",
    ]
    for outcome in outcomes:
        lines += [f"## {outcome.name}", ""]
        status = f"{outcome.status}, {outcome.seconds:.0f} s"
        lines += [f"Status: {status}" + (f" — {outcome.note}" if outcome.note else ""), ""]
        settings = outcome.report.get("settings")
        if settings:
            lines += ["Settings: " + ", ".join(f"`{key}={value}`" for key, value in settings.items()), ""]
        rows = result_rows(outcome.report) if outcome.report else []
        if rows:
            lines += ["| figure | value | unit | target | met |", "|---|---:|---|---|---|"]
            lines += [
                f"| {row.get('name', '')} | {_cell(row.get('value'))} | {row.get('unit', '')} | "
                f"{row.get('target') or ''} | {_cell(row.get('ok'))} |"
                for row in rows
            ]
            lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="benchmarks to run (bench_NAME.py); default all")
    parser.add_argument("--output", type=Path, default=HERE / "results.md", help="default: benchmarks/results.md")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed to each benchmark")
    args = parser.parse_args()
    from diarizen_lab.utils.atomic import atomic_open

    scripts = benchmark_scripts(args.only)
    if not scripts:
        sys.exit(f"run_all: no benchmark matches {args.only} in {HERE}")
    started = datetime.datetime.now()
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for script in scripts:
            outcomes.append(run_benchmark(script, Path(tmp) / f"{script.stem}.json", args.timeout))
    report = markdown(outcomes, machine(), started)  # before the temporary output file makes the tree dirty
    with atomic_open(args.output, "w") as f:
        f.write(report)
    print(f"=== wrote {args.output}")
    for outcome in outcomes:
        print(f"  {outcome.name:<14} {outcome.status}" + (f": {outcome.note}" if outcome.note else ""))
    return 1 if any(outcome.status.startswith("failed") for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
