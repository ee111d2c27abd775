"""The supervised stage recipe end to end on a tiny synthetic corpus: train -> average -> diarize -> score ->
report, then a second run that finds every stage's output and redoes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from diarizen_lab.data.wav_scp import read_wav_scp
from diarizen_lab.evaluation.report import read_score
from test_training_loop import corpus, write_config  # noqa: F401  (fixture re-used)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "diar_ssl" / "run_stage.py"


def run_recipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPE), *args], capture_output=True, text=True, env=os.environ,
                          timeout=900)


def test_stage_recipe_end_to_end_and_resumable(tmp_path, corpus):  # noqa: F811
    config = write_config(tmp_path, corpus, "recipe")
    config.write_text(config.read_text().replace("[trainer]\n", "[trainer]\nvalidate_at_start = true\n"))
    result = run_recipe("-C", str(config), "--with-untrained", "--require-learning", "0.95")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "learning check: val/der untrained" in result.stdout and ": ok" in result.stdout

    run_dir = tmp_path / "exp" / "recipe"
    for model in ("avg_best_3", "untrained"):
        for split in ("dev", "test"):
            out = run_dir / "infer" / model / split
            expected = sorted(f"{uri}.rttm" for uri in read_wav_scp(corpus / split / "wav.scp"))
            assert sorted(p.name for p in (out / "rttm").iterdir()) == expected
            for collar in ("0", "0.25"):
                score = read_score(split, out / f"score_collar{collar}.json")
                assert score.collar == float(collar) and score.recordings == len(expected)
                assert score.der == pytest.approx(score.missed + score.false_alarm + score.confusion)
    table = (run_dir / "results.md").read_text().splitlines()
    assert table[0] == "# recipe"
    assert len([line for line in table if line.startswith(("| dev (", "| test ("))]) == 8
    assert (run_dir / "results.png").stat().st_size > 0

    again = run_recipe("-C", str(config), "--with-untrained", "--stage", "3")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("wrote 0 RTTM file(s)") == 4  # every recording was already diarized
