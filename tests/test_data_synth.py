"""The built-in synthetic corpus: reproducible, distinct voices, RTTM that matches the audio."""

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diarizen_lab.data.check import check_data_dir, speech_and_overlap
from diarizen_lab.data.datadir import DataDir
from diarizen_lab.data.rttm import read_rttm
from diarizen_lab.data.synth import SAMPLE_RATE, SENTENCES, SPEAKERS, Speaker, Voices, synthesize_corpus
from diarizen_lab.errors import DiarizenLabError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    synthesize_corpus(out, minutes=1.5, seed=3, meeting_minutes=0.5)
    return out


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_data_check(corpus):
    assert sorted(files(corpus)) == [
        "dev/rttm", "dev/uem", "dev/wav.scp", "dev/wav/dev_000.wav",
        "synth.json",
        "test/rttm", "test/uem", "test/wav.scp", "test/wav/test_000.wav",
        "train/rttm", "train/uem", "train/wav.scp", "train/wav/train_000.wav", "train/wav/train_001.wav",
    ]
    assert (corpus / "dev" / "wav.scp").read_text() == "dev_000 wav/dev_000.wav\n"
    for split in ("train", "dev", "test"):
        report = check_data_dir(corpus / split)
        assert report.problems == []
        assert 2 <= report.summary.min_speakers <= report.summary.max_speakers <= 4
    info = sf.info(str(corpus / "train" / "wav" / "train_000.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert info.frames == 36 * SAMPLE_RATE  # 80 % of 1.5 min in 2 meetings


def test_same_seed_same_bytes_other_seed_other_bytes(corpus, tmp_path):
    synthesize_corpus(tmp_path / "again", minutes=1.5, seed=3, meeting_minutes=0.5)
    assert files(tmp_path / "again") == files(corpus)
    synthesize_corpus(tmp_path / "other", minutes=1.5, seed=4, meeting_minutes=0.5)
    other = files(tmp_path / "other")
    assert other.keys() == files(corpus).keys()
    assert other["train/wav/train_000.wav"] != files(corpus)["train/wav/train_000.wav"]
    assert other["train/rttm"] != files(corpus)["train/rttm"]


def test_speakers_are_disjoint_between_splits(corpus):
    used = {split: {t.speaker for t in read_rttm(corpus / split / "rttm")} for split in ("train", "dev", "test")}
    declared = {split: {s.name for s in SPEAKERS if s.split == split} for split in used}
    for split in used:
        assert used[split] and used[split] <= declared[split]
    for a, b in itertools.combinations(declared, 2):
        assert not declared[a] & declared[b]
    voices = {split: {(s.voice, s.speed, s.pitch) for s in SPEAKERS if s.split == split} for split in used}
    assert not voices["train"] & voices["test"]


def test_overlap_ratio_follows_the_setting(corpus):
    speech = overlap = 0.0
    for split in ("train", "dev", "test"):
        for recording in DataDir.load(corpus / split).recordings.values():
            s, o = speech_and_overlap(recording.turns)
            speech, overlap = speech + s, overlap + o
    assert 0.10 <= overlap / speech <= 0.20


def test_rttm_matches_the_audio(corpus):
    frame = SAMPLE_RATE // 100
    for split in ("train", "dev", "test"):
        for recording in DataDir.load(corpus / split).recordings.values():
            audio, _ = sf.read(str(recording.path), dtype="float32")
            near_speech = np.zeros(len(audio), dtype=bool)
            for turn in recording.turns:
                first, last = round(turn.start * SAMPLE_RATE), round(turn.end * SAMPLE_RATE)
                near_speech[max(0, first - frame // 2): last + frame // 2] = True
                # speech in the first and last 10 ms (the -80 dBFS noise floor has an RMS of 1e-4) ...
                for edge in (audio[first: first + frame], audio[last - frame: last]):
                    assert np.sqrt(np.mean(edge**2)) > 7e-4, (recording.name, turn)
                # ... and no pause as long as 0.3 s inside
                windows = np.lib.stride_tricks.sliding_window_view(np.abs(audio[first:last]), 3 * frame * 10)
                assert windows[::frame].max(axis=1).min() > 0.01, (recording.name, turn)
            # elsewhere only the noise floor
            silence = audio[~near_speech]
            assert np.abs(silence).max() < 1e-3, recording.name
            rms = np.sqrt(np.mean(silence[: len(silence) // frame * frame].reshape(-1, frame) ** 2, axis=1))
            assert rms.max() < 3e-4, recording.name
            assert 0.5 < near_speech.mean() < 0.95


def _features(samples: np.ndarray) -> np.ndarray:
    """Median F0 (autocorrelation, voiced 40 ms frames), spectral centroid and duration."""
    size, low, high = round(0.04 * SAMPLE_RATE), SAMPLE_RATE // 400, SAMPLE_RATE // 60
    pitches = []
    for start in range(0, len(samples) - size, SAMPLE_RATE // 100):
        frame = samples[start: start + size] - samples[start: start + size].mean()
        if np.sqrt(np.mean(frame**2)) < 0.05 * np.abs(samples).max():
            continue
        correlation = np.correlate(frame, frame, "full")[size - 1:]
        lag = low + np.argmax(correlation[low:high])
        if correlation[lag] > 0.5 * correlation[0]:
            pitches.append(SAMPLE_RATE / lag)
    spectrum = np.abs(np.fft.rfft(samples))
    centroid = (spectrum * np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)).sum() / spectrum.sum()
    return np.array([np.median(pitches), centroid, len(samples) / SAMPLE_RATE])


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(a, b)))


def test_voices_really_differ():
    voices = Voices()
    text = SENTENCES[2]
    features = {s.name: _features(voices.say(s, text).samples) for s in SPEAKERS}
    assert len({voices.say(s, text).samples.tobytes() for s in SPEAKERS}) == len(SPEAKERS)
    for a, b in itertools.combinations(SPEAKERS, 2):
        assert _difference(features[a.name], features[b.name]) > 0.03, (a, b)
    # the measure does catch a voice espeak-ng silently ignores: en-gb+f4 sounds exactly like en-gb
    same = [voices.say(Speaker(v, v, 160, 50, "train"), text).samples for v in ("en-gb+f4", "en-gb")]
    assert _difference(_features(same[0]), _features(same[1])) == 0.0


def test_missing_espeak_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DiarizenLabError, match=r"^espeak-ng is not installed \(install it: sudo apt-get install"):
        synthesize_corpus(tmp_path / "out", minutes=1)
    result = subprocess.run(
        [sys.executable, "-m", "diarizen_lab", "data", "synth", str(tmp_path / "out"), "--minutes", "1"],
        capture_output=True, text=True, env={"PATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("diarizen-lab: error: espeak-ng is not installed")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_synth_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "diarizen_lab", "data", "synth", str(tmp_path / "c"), "--minutes", "0.5",
         "--seed", "1", "--meeting-minutes", "0.4"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {tmp_path / 'c'} (meetings: train 1, dev 1, test 1)\n"
