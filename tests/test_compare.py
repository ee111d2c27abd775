"""Paired comparison of systems: hand-computed bootstrap intervals, Wilcoxon p-values and refusals."""

from __future__ import annotations

import json

import pytest

from diarizen_lab.cli import main
from diarizen_lab.data.rttm import Turn, write_rttm
from diarizen_lab.errors import InputError
from diarizen_lab.evaluation.compare import check_comparable, compare, der_interval
from diarizen_lab.evaluation.score import DiarizationErrors, ScoreReport


def report(errors: dict[str, tuple[float, float]], collar: float = 0.0) -> ScoreReport:
    """A score report from (scored, confused) seconds per recording."""
    return ScoreReport(
        collar=collar, skip_overlap=False,
        recordings={uri: DiarizationErrors(scored=s, confusion=c) for uri, (s, c) in errors.items()},
    )


def by_metric(differences):
    return {d.metric: d for d in differences}


def test_identical_systems_differ_by_zero_with_a_zero_interval():
    system = report({f"r{i}": (100.0 + i, 10.0 + 3 * i) for i in range(8)})
    for d in compare(system, system, resamples=500):
        assert d.difference == 0.0 and d.interval == (0.0, 0.0)
        assert d.wilcoxon_p == 1.0 and (d.better, d.worse, d.same) == (0, 0, 8)


def test_better_on_every_one_of_16_recordings_is_significant():
    baseline = report({f"r{i:02d}": (600.0, 120.0 + i) for i in range(16)})
    candidate = report({f"r{i:02d}": (600.0, 110.0 + i - 0.5 * i) for i in range(16)})
    der = by_metric(compare(baseline, candidate, resamples=2000))["DER"]
    # exact two-sided signed-rank test: all 16 signs negative has probability 2 / 2**16
    assert der.wilcoxon_p == pytest.approx(2 / 2**16)
    assert der.wilcoxon_p < 0.01
    assert (der.better, der.worse, der.same) == (16, 0, 0)
    expected = 100 * sum(-10.0 - 0.5 * i for i in range(16)) / (16 * 600.0)
    assert der.difference == pytest.approx(expected)
    assert der.interval[1] < 0 < der.baseline
    assert der.interval[0] <= der.difference <= der.interval[1]


def test_a_tie_is_broken_by_the_long_recording():
    # short: 100 s, 20 % -> 30 % (+10 points); long: 900 s, 20 % -> 10 % (-10 points).
    # Per recording it is a tie (one better, one worse, equal ranks: p = 1); md-eval's corpus-level DER,
    # (30 + 90) / 1000 against (20 + 180) / 1000, is 8 points better.
    baseline = report({"short": (100.0, 20.0), "long": (900.0, 180.0)})
    candidate = report({"short": (100.0, 30.0), "long": (900.0, 90.0)})
    der = by_metric(compare(baseline, candidate, resamples=4000, seed=3))["DER"]
    assert (der.baseline, der.candidate) == (pytest.approx(20.0), pytest.approx(12.0))
    assert der.difference == pytest.approx(-8.0)
    assert (der.better, der.worse) == (1, 1) and der.wilcoxon_p == pytest.approx(1.0)
    # draws: (short, short) +10 with probability 1/4, (long, long) -10 with 1/4, mixed -8 with 1/2
    assert der.interval == (pytest.approx(-10.0), pytest.approx(10.0))
    # an unweighted mean of per-recording differences would be 0: the interval of the long one alone is not
    assert der_interval(candidate, resamples=4000) == (pytest.approx(10.0), pytest.approx(30.0))


def test_components_are_compared_separately():
    baseline = ScoreReport(0.0, False, {
        "a": DiarizationErrors(scored=50.0, missed=5.0, false_alarm=1.0, confusion=2.0),
        "b": DiarizationErrors(scored=50.0, missed=5.0, false_alarm=1.0, confusion=2.0),
    })
    candidate = ScoreReport(0.0, False, {
        "a": DiarizationErrors(scored=50.0, missed=2.0, false_alarm=3.0, confusion=2.0),
        "b": DiarizationErrors(scored=50.0, missed=3.0, false_alarm=1.0, confusion=2.0),
    })
    metrics = by_metric(compare(baseline, candidate, resamples=200))
    assert metrics["miss"].difference == pytest.approx(-5.0) and metrics["miss"].better == 2
    assert metrics["FA"].difference == pytest.approx(2.0) and (metrics["FA"].worse, metrics["FA"].same) == (1, 1)
    assert metrics["confusion"].same == 2 and metrics["confusion"].interval == (0.0, 0.0)
    assert metrics["DER"].difference == pytest.approx(-3.0)


def test_the_interval_depends_on_the_seed_only():
    baseline = report({f"r{i}": (60.0 + 10 * i, 6.0 + i) for i in range(10)})
    candidate = report({f"r{i}": (60.0 + 10 * i, 6.0 + (i % 3) - 1) for i in range(10)})
    first = compare(baseline, candidate, seed=1, resamples=1000)
    assert compare(baseline, candidate, seed=1, resamples=1000) == first
    assert compare(baseline, candidate, seed=2, resamples=1000)[0].interval != first[0].interval


def test_mismatched_collar_or_references_are_refused():
    baseline = report({"a": (10.0, 1.0), "b": (20.0, 2.0)})
    with pytest.raises(InputError, match=r"cand.json: scored with collar 0.25 s.*baseline with collar 0 s"):
        check_comparable(baseline, report({"a": (10.0, 1.0), "b": (20.0, 2.0)}, collar=0.25), "base.json", "cand.json")
    with pytest.raises(InputError, match=r"not the same recordings as the baseline: lacks 1 of the baseline's"):
        check_comparable(baseline, report({"a": (10.0, 1.0), "c": (20.0, 2.0)}), "base.json", "cand.json")
    with pytest.raises(InputError, match=r"recording 'b' has 19.500 s of scored speech, 20.000 s in the baseline"):
        check_comparable(baseline, report({"a": (10.0, 1.0), "b": (19.5, 2.0)}), "base.json", "cand.json")


def test_compare_cli_on_score_files(tmp_path, capsys):
    reference = [Turn(f"m{i}", 0.0, 10.0 + i, "A") for i in range(4)] + [
        Turn(f"m{i}", 10.0 + i, 20.0, "B") for i in range(4)
    ]
    worse = [Turn(t.recording, t.start, t.end - 2.0, t.speaker) for t in reference]  # 2 s missed per turn
    paths = {}
    for name, turns in (("ref", reference), ("base", worse), ("cand", reference)):
        write_rttm(tmp_path / f"{name}.rttm", turns)
    for name in ("base", "cand"):
        paths[name] = tmp_path / f"{name}.json"
        assert main(["score", "-r", str(tmp_path / "ref.rttm"), "-s", str(tmp_path / f"{name}.rttm"),
                     "-o", str(paths[name])]) == 0
    assert main(["score", "-r", str(tmp_path / "ref.rttm"), "-s", str(tmp_path / "cand.rttm"), "--collar", "0.25",
                 "-o", str(tmp_path / "collar.json")]) == 0
    capsys.readouterr()
    assert main(["compare", str(paths["base"]), str(paths["cand"]), "--json", "--seed", "5"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    der = result["differences"][0]
    assert der["metric"] == "DER" and der["difference"] == pytest.approx(-100 * 16 / 80)
    assert der["better"] == 4 and result["seed"] == 5 and result["recordings"] == 4
    assert main(["compare", str(paths["base"]), str(paths["cand"])]) == 0
    table = capsys.readouterr().out
    assert "4 recordings, collar 0 s on each side" in table
    assert next(line for line in table.splitlines() if line.startswith("DER")).split()[1:4] == [
        "20.00", "0.00", "-20.00"
    ]
    assert main(["compare", str(paths["base"]), str(tmp_path / "collar.json")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "collar.json: scored with collar 0.25 s" in error
