"""Results table and DER chart from real score reports."""

from __future__ import annotations


import pytest

from diarizen_lab.cli import main
from diarizen_lab.data.rttm import Turn, write_rttm
from diarizen_lab.errors import InputError
from diarizen_lab.evaluation.report import read_score


def test_score_then_report(tmp_path, capsys):
    ref = tmp_path / "ref.rttm"
    hyp = tmp_path / "hyp.rttm"
    write_rttm(ref, [Turn("rec", 0.0, 10.0, "A"), Turn("rec", 10.0, 20.0, "B")])
    write_rttm(hyp, [Turn("rec", 0.0, 10.0, "x"), Turn("rec", 10.0, 15.0, "y"), Turn("rec", 15.0, 20.0, "x")])
    for collar in ("0", "0.25"):
        assert main(["score", "-r", str(ref), "-s", str(hyp), "--collar", collar,
                     "-o", str(tmp_path / f"score_{collar}.json")]) == 0
    plain = read_score("test", tmp_path / "score_0.json")
    assert plain.der == pytest.approx(25.0) and plain.confusion == pytest.approx(25.0)
    assert plain.scored_seconds == pytest.approx(20.0) and plain.recordings == 1
    # a 0.25 s collar on each side of the 4 reference boundaries (0, 10, 10, 20) removes 1.0 s from scoring
    with_collar = read_score("test", tmp_path / "score_0.25.json")
    assert with_collar.scored_seconds == pytest.approx(19.0)
    assert with_collar.confusion == pytest.approx(100 * 4.75 / 19.0)

    out = tmp_path / "exp" / "results.md"
    capsys.readouterr()
    assert main(["report", "-o", str(out), f"test={tmp_path / 'score_0.json'}",
                 f"test={tmp_path / 'score_0.25.json'}"]) == 0
    table = out.read_text().splitlines()
    assert table[0] == "# exp"
    # one recording: every bootstrap draw is that recording, the interval is the DER itself;
    # JER: A (x, 0-10 and 15-20) 5 / 15, B (y, 10-15) 5 / 10, mean 41.67 %
    assert table[4] == "| test | collar 0 | 1 | 0.01 | 25.00 | [25.00, 25.00] | 0.00 | 0.00 | 25.00 | 41.67 |"
    assert table[5].startswith("| test | collar 0.25 | 1 | 0.01 | 25.00 | [25.00, 25.00] |")
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_score_file(tmp_path):
    bad = tmp_path / "score.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match=r"score.json: not a score report"):
        read_score("test", bad)
    assert main(["report", "-o", str(tmp_path / "r.md"), "test"]) == 2
    assert not (tmp_path / "r.md").exists()


def test_report_intervals_and_paired_difference_to_a_baseline(tmp_path, capsys):
    ref, base, cand = tmp_path / "ref.rttm", tmp_path / "base.rttm", tmp_path / "cand.rttm"
    write_rttm(ref, [Turn("short", 0.0, 10.0, "A"), Turn("long", 0.0, 90.0, "A")])
    write_rttm(base, [Turn("short", 0.0, 8.0, "x"), Turn("long", 0.0, 72.0, "x")])  # 20 % missed on both
    write_rttm(cand, [Turn("short", 0.0, 7.0, "x"), Turn("long", 0.0, 81.0, "x")])  # 30 % and 10 % missed
    for name in ("base", "cand"):
        assert main(["score", "-r", str(ref), "-s", str(tmp_path / f"{name}.rttm"),
                     "-o", str(tmp_path / f"{name}.json")]) == 0
    out = tmp_path / "results.md"
    capsys.readouterr()
    assert main(["report", "-o", str(out), f"base={tmp_path / 'base.json'}", f"cand={tmp_path / 'cand.json'}",
                 "--baseline", "base"]) == 0
    rows = out.read_text().splitlines()
    assert rows[2].endswith("| JER % | ΔDER vs base [95 % CI] |")
    # base: 20 % everywhere, whatever the draw; cand: 30 % (short only), 10 % (long only) or 12 % (both)
    assert rows[4] == "| base | collar 0 | 2 | 0.03 | 20.00 | [20.00, 20.00] | 20.00 | 0.00 | 0.00 | 20.00 | – |"
    # the difference to base is +10, -10 or -8 points: corpus-level -8 with the +-10 interval
    assert rows[5] == (
        "| cand | collar 0 | 2 | 0.03 | 12.00 | [10.00, 30.00] | 12.00 | 0.00 | 0.00 | 20.00 | -8.00 [-10.00, +10.00] |"
    )
    assert main(["report", "-o", str(tmp_path / "r.md"), f"cand={tmp_path / 'cand.json'}", "--baseline", "x"]) == 2
    assert "--baseline 'x' is none of the sets (cand)" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()
