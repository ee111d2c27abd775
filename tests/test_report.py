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
    assert table[4] == "| test | collar 0 | 1 | 0.01 | 25.00 | 0.00 | 0.00 | 25.00 |"
    assert table[5].startswith("| test | collar 0.25 | 1 | 0.01 | 25.00 |")
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_score_file(tmp_path):
    bad = tmp_path / "score.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match=r"score.json: not a score report"):
        read_score("test", bad)
    assert main(["report", "-o", str(tmp_path / "r.md"), "test"]) == 2
    assert not (tmp_path / "r.md").exists()
