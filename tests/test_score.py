"""DER scoring against an independent frame-level implementation of NIST md-eval-22 semantics, on AMI references."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pyannote.core import Annotation, Segment, Timeline
from scipy.optimize import linear_sum_assignment

from diarizen_lab.cli import main
from diarizen_lab.data.rttm import Turn, read_rttm, to_annotations
from diarizen_lab.data.rttm import write_rttm as write_turns
from diarizen_lab.data.uem import read_uem
from diarizen_lab.errors import InputError
from diarizen_lab.evaluation.rttm import annotation_to_turns, write_rttm
from diarizen_lab.evaluation.score import merge_overlapping_turns, score, score_files, score_recording

AMI = Path(__file__).resolve().parents[1].parent / "shared" / "ami-setup"
RECORDINGS = ["ES2011a", "IS1008a", "TS3004a"]  # the three shortest AMI dev meetings
FRAMES_PER_SECOND = 1000  # 1 ms frames: every time below is on this grid, except UEM ends (< 0.5 ms off)

needs_ami = pytest.mark.skipif(not AMI.is_dir(), reason=f"AMI setup not found at {AMI}")


# ---------------------------------------------------------------------------------------------------------------
# independent frame-level reference implementation (md-eval-22 semantics)


def frame_errors(reference: list[Turn], hypothesis: list[Turn], uem: list[tuple[float, float]], collar: float,
                 skip_overlap: bool) -> dict[str, float]:
    """Seconds of scored / missed / false-alarm / confused speaker time, counted on 1 ms frames."""
    def index(t: float) -> int:
        return max(0, int(round(t * FRAMES_PER_SECOND)))

    end = max([t.end for t in reference + hypothesis] + [e for _, e in uem]) + 2 * collar + 1
    num_frames = index(end)

    def activity(turns: list[Turn]) -> dict[str, np.ndarray]:
        active: dict[str, np.ndarray] = {}
        for turn in turns:
            active.setdefault(turn.speaker, np.zeros(num_frames, dtype=bool))[index(turn.start):index(turn.end)] = True
        return active

    ref, hyp = activity(reference), activity(hypothesis)
    in_uem = np.zeros(num_frames, dtype=bool)
    for start, stop in uem:
        in_uem[index(start):index(stop)] = True

    # one-to-one map maximising co-occurrence time inside the UEM (before collars), like md-eval
    ref_names, hyp_names = sorted(ref), sorted(hyp)
    overlap = np.array([[np.sum(ref[r] & hyp[h] & in_uem) for h in hyp_names] for r in ref_names]).reshape(
        len(ref_names), len(hyp_names)
    )
    rows, cols = linear_sum_assignment(-overlap)
    mapping = {ref_names[r]: hyp_names[c] for r, c in zip(rows, cols) if overlap[r, c] > 0}

    scored = in_uem.copy()
    for turn in reference:
        for boundary in (turn.start, turn.end):
            scored[index(boundary - collar):index(boundary + collar)] = False
    nref = sum((a.astype(int) for a in ref.values()), np.zeros(num_frames, dtype=int))
    nhyp = sum((a.astype(int) for a in hyp.values()), np.zeros(num_frames, dtype=int))
    if skip_overlap:
        scored &= nref <= 1
    correct = sum((ref[r] & hyp[h]).astype(int) for r, h in mapping.items()) if mapping else 0
    seconds = 1 / FRAMES_PER_SECOND
    return {
        "scored": float(np.sum(nref[scored])) * seconds,
        "missed": float(np.sum(np.maximum(0, nref - nhyp)[scored])) * seconds,
        "false_alarm": float(np.sum(np.maximum(0, nhyp - nref)[scored])) * seconds,
        "confusion": float(np.sum((np.minimum(nref, nhyp) - correct)[scored])) * seconds,
    }


def frame_der(errors: dict[str, float]) -> float:
    return 100 * (errors["missed"] + errors["false_alarm"] + errors["confusion"]) / errors["scored"]


# ---------------------------------------------------------------------------------------------------------------
# perturbations of a reference, all on the millisecond grid


def ms(t: float) -> float:
    return round(t * 1000) / 1000


def shift_boundaries(turns, rng, spread=0.4):
    shifted = []
    for t in turns:
        start, end = ms(max(0.0, t.start + rng.uniform(-spread, spread))), ms(t.end + rng.uniform(-spread, spread))
        if end > start:
            shifted.append(Turn(t.recording, start, end, t.speaker))
    return shifted


def drop_turns(turns, rng, fraction=0.25):
    return [t for t in turns if rng.random() > fraction]


def relabel(turns, rng, fraction=0.2):
    speakers = sorted({t.speaker for t in turns})
    renamed = {s: f"hyp{i}" for i, s in enumerate(rng.permutation(speakers))}
    result = []
    for t in turns:
        speaker = renamed[t.speaker] if rng.random() > fraction else renamed[speakers[rng.integers(len(speakers))]]
        result.append(Turn(t.recording, t.start, t.end, speaker))
    return result


def add_false_alarms(turns, rng, count=60):
    end = max(t.end for t in turns)
    extra = []
    for _ in range(count):
        start = ms(rng.uniform(0, end - 5))
        extra.append(Turn(turns[0].recording, start, ms(start + rng.uniform(0.2, 4.0)), f"fa{rng.integers(3)}"))
    return turns + extra


def merge_speakers(turns, rng):
    first, second = sorted({t.speaker for t in turns})[:2]
    return [Turn(t.recording, t.start, t.end, first if t.speaker == second else t.speaker) for t in turns]


def everything(turns, rng):
    return add_false_alarms(relabel(drop_turns(shift_boundaries(merge_speakers(turns, rng), rng), rng), rng), rng)


PERTURBATIONS = {
    "shift": shift_boundaries,
    "drop": drop_turns,
    "relabel": relabel,
    "false_alarms": add_false_alarms,
    "merge": merge_speakers,
    "everything": everything,
}


@pytest.fixture(scope="module")
def ami_dev():
    references: dict[str, list[Turn]] = {}
    for turn in read_rttm(AMI / "only_words" / "rttms" / "dev.rttm"):
        if turn.recording in RECORDINGS:
            references.setdefault(turn.recording, []).append(turn)
    uems = {name: read_uem(AMI / "uems" / "dev" / f"{name}.uem")[name] for name in RECORDINGS}
    return references, uems


def to_timelines(uems):
    return {uri: Timeline([Segment(s, e) for s, e in spans], uri=uri) for uri, spans in uems.items()}


# ---------------------------------------------------------------------------------------------------------------
# tests


@needs_ami
@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_matches_frame_level_md_eval_semantics(ami_dev, name):
    references, uems = ami_dev
    rng = np.random.default_rng(sorted(PERTURBATIONS).index(name))
    hypotheses = {uri: PERTURBATIONS[name](turns, rng) for uri, turns in references.items()}
    for collar, skip_overlap in [(0.0, False), (0.25, False), (0.25, True)]:
        report = score(to_annotations(sum(references.values(), [])), to_annotations(sum(hypotheses.values(), [])),
                       to_timelines(uems), collar=collar, skip_overlap=skip_overlap)
        totals = {"scored": 0.0, "missed": 0.0, "false_alarm": 0.0, "confusion": 0.0}
        for uri in RECORDINGS:
            expected = frame_errors(references[uri], hypotheses[uri], uems[uri], collar, skip_overlap)
            ours = report.recordings[uri]
            for key in totals:
                totals[key] += expected[key]
                assert getattr(ours, key) == pytest.approx(expected[key], abs=0.01), (uri, collar, skip_overlap, key)
            assert abs(ours.der - frame_der(expected)) < 0.01, (uri, collar, skip_overlap)
        assert abs(report.overall.der - frame_der(totals)) < 0.01
        if name != "relabel":
            assert report.overall.der > 1.0  # the perturbation did something


@needs_ami
def test_reference_against_itself_scores_zero_through_the_cli(tmp_path, capsys):
    uem = tmp_path / "dev.uem"
    uem.write_text("".join(p.read_text() for p in sorted((AMI / "uems" / "dev").glob("*.uem"))))
    code = main(["score", "-r", str(AMI / "only_words/rttms/dev.rttm"), "-s", str(AMI / "only_words/rttms/dev"),
                 "-u", str(uem), "--collar", "0.25", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["recordings"]) == 18
    assert report["overall"]["der"] == 0.0
    assert report["overall"]["scored_seconds"] > 20000
    assert report["missing_hypotheses"] == [] and report["unexpected_hypotheses"] == []


@needs_ami
def test_cli_table_matches_library_and_collar_is_per_side(ami_dev, tmp_path):
    references, uems = ami_dev
    rng = np.random.default_rng(7)
    ref_file, hyp_dir, uem_file = tmp_path / "ref.rttm", tmp_path / "hyp", tmp_path / "all.uem"
    write_turns(ref_file, sum(references.values(), []))
    for uri, turns in references.items():
        write_turns(hyp_dir / f"{uri}.rttm", shift_boundaries(turns, rng))
    uem_file.write_text("".join(f"{uri} 1 {s} {e}\n" for uri, spans in uems.items() for s, e in spans))
    result = subprocess.run(
        [sys.executable, "-m", "diarizen_lab", "score", "-r", ref_file, "-s", hyp_dir, "-u", uem_file,
         "--collar", "0.25"],
        capture_output=True, text=True, check=True,
    )
    library = score_files(ref_file, hyp_dir, uem_file, collar=0.25)
    overall = next(line for line in result.stdout.splitlines() if line.startswith("OVERALL"))
    assert float(overall.split()[1]) == pytest.approx(library.overall.der, abs=0.005)
    assert "each side" in result.stdout
    # md-eval's -c 0.25 removes 0.5 s around each boundary: our 0.25 must equal pyannote's collar=0.5
    from pyannote.metrics.diarization import DiarizationErrorRate
    uri = RECORDINGS[0]
    hypothesis = to_annotations(read_rttm(hyp_dir / f"{uri}.rttm"))[uri]
    reference = to_annotations(references[uri])[uri]
    uem = to_timelines(uems)[uri]
    pyannote = DiarizationErrorRate(collar=0.5)(reference, hypothesis, uem=uem, detailed=True)
    assert library.recordings[uri].scored == pytest.approx(pyannote["total"], abs=1e-6)
    assert "--collar" in subprocess.run([sys.executable, "-m", "diarizen_lab", "score", "--help"],
                                        capture_output=True, text=True).stdout


def test_skip_overlap_and_collar_by_hand():
    reference = Annotation(uri="r")
    reference[Segment(0, 10), "a"] = "A"
    reference[Segment(8, 14), "b"] = "B"
    hypothesis = Annotation(uri="r")
    hypothesis[Segment(0, 9), "x"] = "X"
    hypothesis[Segment(9, 14), "y"] = "Y"
    uem = Timeline([Segment(0, 20)])
    plain = score_recording(reference, hypothesis, uem)
    # A: 10 s, B: 6 s; Y (5 s on B) maps to B, X (9 s on A) to A; miss: A 9-10 and B 8-9
    assert plain.scored == pytest.approx(16)
    assert plain.missed == pytest.approx(2)
    assert plain.false_alarm == pytest.approx(0)
    assert plain.confusion == pytest.approx(0)
    skipped = score_recording(reference, hypothesis, uem, skip_overlap=True)
    assert skipped.scored == pytest.approx(12)  # 8..10 removed
    assert skipped.missed == pytest.approx(0)
    collared = score_recording(reference, hypothesis, uem, collar=0.5)
    # boundaries 0, 8, 10, 14 (+-0.5 s, clipped at 0): A scored 0.5-7.5, 8.5-9.5; B 8.5-9.5, 10.5-13.5
    assert collared.scored == pytest.approx(7 + 1 + 1 + 3)
    assert collared.missed == pytest.approx(1.0)  # B over 8.5-9 and A over 9-9.5


def test_speaker_map_is_computed_before_collars_like_md_eval():
    # A: four short turns (2.4 s, mostly inside collars); B: one long turn (2.2 s). The only system speaker X
    # overlaps A longer on the whole UEM, so md-eval maps X to A, although B is longer once collars are removed.
    reference = Annotation(uri="r")
    for i, start in enumerate([0.0, 1.0, 2.0, 3.0]):
        reference[Segment(start, start + 0.6), i] = "A"
    reference[Segment(4.0, 6.2), 9] = "B"
    hypothesis = Annotation(uri="r")
    hypothesis[Segment(0.0, 6.2), 0] = "X"
    uem = Timeline([Segment(0, 6.2)])
    ours = score_recording(reference, hypothesis, uem, collar=0.25)
    assert ours.scored == pytest.approx(4 * 0.1 + 1.7)
    assert ours.confusion == pytest.approx(1.7) and ours.missed == 0 and ours.false_alarm == 0
    turns = [Turn("r", s.start, s.end, label) for s, _, label in reference.itertracks(yield_label=True)]
    expected = frame_errors(turns, [Turn("r", 0.0, 6.2, "X")], [(0.0, 6.2)], 0.25, False)
    assert ours.confusion == pytest.approx(expected["confusion"], abs=1e-3)
    # pyannote's own DiarizationErrorRate maps after removing collars (X -> B) and reports less confusion
    from pyannote.metrics.diarization import DiarizationErrorRate
    assert DiarizationErrorRate(collar=0.5)(reference, hypothesis, uem=uem, detailed=True)["confusion"] == (
        pytest.approx(0.4)
    )


def test_missing_and_unexpected_hypotheses_are_reported(caplog):
    reference = {"a": Annotation(uri="a"), "b": Annotation(uri="b")}
    reference["a"][Segment(0, 4), 0] = "S1"
    reference["b"][Segment(1, 3), 0] = "S2"
    hypothesis = {"a": Annotation(uri="a"), "c": Annotation(uri="c")}
    hypothesis["a"][Segment(0, 4), 0] = "whoever"
    with caplog.at_level("WARNING"):
        report = score(reference, hypothesis)
    assert report.missing_hypotheses == ["b"] and report.unexpected_hypotheses == ["c"]
    assert report.recordings["b"].missed == pytest.approx(2) and report.recordings["a"].der == 0
    assert report.overall.der == pytest.approx(100 * 2 / 6)
    assert "counted as all missed: b" in caplog.text and "not in the reference" in caplog.text


def test_same_speaker_overlaps_are_merged_but_touching_turns_keep_their_collar():
    annotation = Annotation(uri="u")
    annotation[Segment(0, 2), 0] = "A"
    annotation[Segment(1, 3), 1] = "A"
    annotation[Segment(3, 4), 2] = "A"
    merged = merge_overlapping_turns(annotation)
    assert list(merged.itertracks(yield_label=True)) == [
        (Segment(0, 3), "A", "A"), (Segment(3, 4), "A", "A")
    ]
    self_score = score_recording(annotation, annotation, Timeline([Segment(0, 4)]), collar=0.25)
    assert self_score.scored == pytest.approx(4 - 0.25 - 0.5 - 0.25)  # collars at 0, 3 and 4
    assert self_score.der == 0


def test_malformed_inputs_name_file_and_line(tmp_path, capsys):
    good = tmp_path / "good.rttm"
    good.write_text("SPEAKER r 1 0.00 1.00 <NA> <NA> A <NA> <NA>\n")
    bad = tmp_path / "bad.rttm"
    bad.write_text("SPEAKER r 1 0.00 1.00 <NA> <NA> A <NA> <NA>\nSPEAKER r 1 zero 1.00 <NA> <NA> A <NA> <NA>\n")
    with pytest.raises(InputError, match=r"bad.rttm:2: start time 'zero' is not a number"):
        score_files(good, bad)
    uem = tmp_path / "bad.uem"
    uem.write_text("r 1 0.0\n")
    assert main(["score", "-r", str(good), "-s", str(good), "-u", str(uem)]) == 2
    assert f"{uem}:1: expected 4 fields" in capsys.readouterr().err
    assert main(["score", "-r", str(tmp_path / "nope.rttm"), "-s", str(good)]) == 2
    assert "nope.rttm: no such reference file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["score", "-r", str(good), "-s", str(tmp_path / "empty")]) == 2
    assert "no *.rttm file" in capsys.readouterr().err
    (tmp_path / "twice").mkdir()
    for name in ("a.rttm", "b.rttm"):
        (tmp_path / "twice" / name).write_text(good.read_text())
    with pytest.raises(InputError, match=r"b.rttm: recording 'r' is also in .*a.rttm"):
        score_files(good, tmp_path / "twice")


def test_written_rttm_merges_touching_turns_and_rounds_to_milliseconds(tmp_path):
    annotation = Annotation(uri="rec")
    annotation[Segment(2.0, 3.0), 0] = "B"
    annotation[Segment(0.0004, 1.0), 1] = "A"
    annotation[Segment(1.0004, 2.5), 2] = "A"  # touches the previous one once on the millisecond grid
    annotation[Segment(2.0, 2.6), 3] = "A"
    annotation[Segment(5.0, 5.0004), 4] = "A"  # empty once rounded
    path = tmp_path / "out" / "rec.rttm"
    write_rttm(path, annotation, "rec")
    assert path.read_text().splitlines() == [
        "SPEAKER rec 1 0.000 2.600 <NA> <NA> A <NA> <NA>",
        "SPEAKER rec 1 2.000 1.000 <NA> <NA> B <NA> <NA>",
    ]
    assert [p.name for p in path.parent.iterdir()] == ["rec.rttm"]  # no temporary file left
    with pytest.raises(ValueError, match="whitespace"):
        annotation_to_turns(annotation, "two words")


def test_jaccard_error_rate_by_hand_with_collar_and_uem(tmp_path):
    reference = Annotation(uri="r")
    reference[Segment(0, 10), "a"] = "A"
    reference[Segment(10, 20), "b"] = "B"
    hypothesis = Annotation(uri="r")
    hypothesis[Segment(0, 10.5), "x"] = "X"  # runs 0.5 s into B
    hypothesis[Segment(10.5, 20), "y"] = "Y"
    plain = score_recording(reference, hypothesis)
    # A-X: false alarm 0.5 over a union of 10.5; B-Y: miss 0.5 over a union of 10
    assert plain.speakers == 2
    assert plain.jer == pytest.approx(100 * (0.5 / 10.5 + 0.5 / 10) / 2)
    # md-eval collar 0.25 s per side: A scored 0.25-9.75, B 10.25-19.75; X keeps 0.25 s of B, Y misses 0.25 s
    collared = score_recording(reference, hypothesis, collar=0.25)
    assert collared.jer == pytest.approx(100 * (0.25 / 9.75 + 0.25 / 9.5) / 2)
    # a UEM of 0-10 leaves A alone, matched exactly by X
    cropped = score_recording(reference, hypothesis, Timeline([Segment(0, 10)]))
    assert (cropped.speakers, cropped.jer) == (1, 0.0)
    # the overall JER averages over the reference speakers of all recordings (not over recordings)
    other_ref, other_hyp = Annotation(uri="s"), Annotation(uri="s")
    other_ref[Segment(0, 4), 0] = "C"
    other_hyp[Segment(0, 3), 0] = "z"
    report = score({"r": reference, "s": other_ref}, {"r": hypothesis, "s": other_hyp})
    assert report.recordings["s"].jer == pytest.approx(25.0)
    assert report.overall.jer == pytest.approx(100 * (0.5 / 10.5 + 0.5 / 10 + 0.25) / 3)
    from pyannote.metrics.diarization import JaccardErrorRate
    metric = JaccardErrorRate()
    metric(reference, hypothesis, uem=Timeline([Segment(0, 20)]))
    metric(other_ref, other_hyp, uem=Timeline([Segment(0, 4)]))
    assert report.overall.jer == pytest.approx(100 * abs(metric))
    # JER goes to the score file and back
    path = tmp_path / "score.json"
    path.write_text(json.dumps(report.to_dict()))
    from diarizen_lab.evaluation.score import read_score_report
    assert read_score_report(path).recordings == report.recordings
    assert json.loads(path.read_text())["overall"]["jer"] == pytest.approx(report.overall.jer)


def test_jer_of_an_unpaired_reference_speaker_is_one_and_extra_system_speakers_cost_nothing():
    reference = Annotation(uri="r")
    reference[Segment(0, 6), 0] = "A"
    reference[Segment(6, 8), 1] = "B"
    hypothesis = Annotation(uri="r")
    hypothesis[Segment(0, 8), 0] = "x"  # paired with A (6 s together); B is left without a system speaker
    hypothesis[Segment(20, 30), 1] = "y"  # outside the reference extent: not scored
    errors = score_recording(reference, hypothesis)
    assert errors.jer == pytest.approx(100 * (2 / 8 + 1.0) / 2)
    assert errors.der == pytest.approx(100 * 2 / 8)  # B's 2 s are confusion, y is outside the scored region
