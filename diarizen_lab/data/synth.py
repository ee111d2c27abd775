"""A small synthetic meeting corpus spoken by espeak-ng voices, for tests and smoke-training.

Each meeting has 2 to 4 speakers taking sentence-level turns with pauses; a turn overlaps the previous one
whenever the overlapped share of speech is below ``overlap_ratio``. Utterances are synthesized once per
(speaker, sentence), resampled to 16 kHz, trimmed to their speech (10 ms frames within 40 dB of the loudest
one) and split at inner pauses of :data:`MIN_PAUSE` or more, so every RTTM turn is where the audio has
speech. Train, dev and test use disjoint speakers. Output (all mono 16 kHz 16-bit WAV)::

    OUT/synth.json                       generation settings
    OUT/{train,dev,test}/wav/<meeting>.wav
    OUT/{train,dev,test}/{wav.scp,rttm,uem}

With ``noise=True`` it also writes material for :mod:`diarizen_lab.data.augment` (no espeak-ng needed, see
:func:`write_noise_and_rirs`)::

    OUT/noise/{noise,music}/*.wav        background noise in MUSAN's layout
    OUT/rirs/*.wav                       room impulse responses

The same seed on the same espeak-ng gives the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from diarizen_lab.data.rttm import Turn, write_rttm
from diarizen_lab.data.uem import write_uem
from diarizen_lab.data.wav_scp import write_wav_scp
from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.utils.atomic import atomic_dir

SAMPLE_RATE = 16000
FRAME = 0.01
"""Seconds per frame of the speech detection that trims utterances."""
SPEECH_THRESHOLD_DB = -40.0
"""A frame is speech when its RMS is at most this far below the loudest frame of the utterance."""
MIN_PAUSE = 0.25
"""Seconds of silence inside an utterance that split it into two turns."""
NOISE_FLOOR_DB = -80.0
"""Level (dBFS) of the white noise added to every meeting."""
SPLITS = {"train": 0.8, "dev": 0.1, "test": 0.1}


@dataclass(frozen=True)
class Speaker:
    """An espeak-ng voice (``language+variant``) at a speed (words per minute) and pitch (0-99)."""

    name: str
    voice: str
    speed: int
    pitch: int
    split: str

    def command(self, text: str) -> list[str]:
        return ["espeak-ng", "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch), "--stdout", text]


# Variants on "en-gb" are ignored by espeak-ng 1.51 ("en-gb+f4" sounds like "en-gb"), hence "en" and the
# regional voices below; pitch and speed spread the speakers further apart (tests/test_data_synth.py checks
# that they all sound different).
SPEAKERS = (
    Speaker("spk01", "en-us+m3", 160, 35, "train"),
    Speaker("spk02", "en-gb-x-rp+m1", 150, 55, "train"),
    Speaker("spk03", "en+m2", 175, 45, "train"),
    Speaker("spk04", "en-us+m7", 165, 65, "train"),
    Speaker("spk05", "en-gb-scotland+m4", 145, 30, "train"),
    Speaker("spk06", "en-029+m5", 170, 50, "train"),
    Speaker("spk07", "en-gb-x-gbclan+m6", 155, 70, "train"),
    Speaker("spk08", "en-gb-x-gbcwmd+m3", 180, 40, "train"),
    Speaker("spk09", "en-gb-x-rp+f4", 160, 50, "train"),
    Speaker("spk10", "en+f2", 170, 40, "train"),
    Speaker("spk11", "en-us+f1", 150, 60, "train"),
    Speaker("spk12", "en-us+f3", 175, 35, "train"),
    Speaker("spk13", "en-gb-scotland+f3", 155, 70, "train"),
    Speaker("spk14", "en-029+f1", 165, 45, "train"),
    Speaker("spk15", "en-gb-x-gbclan+f5", 145, 55, "train"),
    Speaker("spk16", "en-gb-x-gbcwmd+f2", 180, 65, "train"),
    Speaker("spk17", "en-us-nyc+m1", 135, 80, "dev"),
    Speaker("spk18", "en+m7", 140, 25, "dev"),
    Speaker("spk19", "en-us-nyc+f4", 160, 30, "dev"),
    Speaker("spk20", "en+f5", 150, 75, "dev"),
    Speaker("spk21", "en-gb-x-rp+m4", 185, 75, "test"),
    Speaker("spk22", "en-us+m2", 155, 45, "test"),
    Speaker("spk23", "en-us+f4", 170, 55, "test"),
    Speaker("spk24", "en-gb-x-rp+f1", 185, 40, "test"),
)

SENTENCES = (
    "Good morning everyone, let's get started.",
    "Can everybody see the slides on the screen?",
    "The first item on the agenda is the project budget.",
    "I think we are slightly over budget this quarter.",
    "That depends on what the marketing team decides.",
    "Could you send me the figures after the meeting?",
    "We tested the prototype with twelve users last week.",
    "Most of them found the remote control too heavy.",
    "Maybe we should use a lighter material for the case.",
    "Rubber would be cheaper, but it looks less professional.",
    "I'm not sure the customers care about that.",
    "Let's come back to this point later.",
    "Who is responsible for the user interface?",
    "I can take care of the interface design.",
    "The deadline for the first draft is next Friday.",
    "That sounds a bit optimistic to me.",
    "We could split the work into two smaller parts.",
    "Does anyone have questions so far?",
    "Yes, what about the battery life?",
    "The current battery lasts roughly three weeks.",
    "Our competitors offer solar powered models.",
    "Solar panels would raise the price quite a lot.",
    "I agree with that.",
    "Exactly, that was my point.",
    "Sorry, could you repeat the last number?",
    "The production cost should stay under twelve euros.",
    "Let me check the spreadsheet for a second.",
    "Here it is, eleven euros and fifty cents.",
    "That leaves very little room for new features.",
    "We might drop the voice recognition then.",
    "Young people really liked the voice commands though.",
    "Then we should keep it and save money elsewhere.",
    "What do you think about the colour scheme?",
    "Something bright, like yellow or orange.",
    "Our company colours should be visible somewhere.",
    "We can print the logo on the back.",
    "Okay, I think we have a decision.",
    "Let's write that down in the minutes.",
    "Is there anything else we need to discuss today?",
    "Then let's meet again on Thursday afternoon.",
)


def _speech_segments(samples: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` sample ranges of speech (10 ms frames within 40 dB of the loudest), split at pauses
    of at least :data:`MIN_PAUSE`."""
    size = round(FRAME * SAMPLE_RATE)
    frames = samples[: len(samples) // size * size].reshape(-1, size)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (SPEECH_THRESHOLD_DB / 20))
    breaks = np.flatnonzero(np.diff(loud) > round(MIN_PAUSE / FRAME))
    starts = np.concatenate([[loud[0]], loud[breaks + 1]]) * size
    ends = (np.concatenate([loud[breaks], [loud[-1]]]) + 1) * size
    return list(zip(starts.tolist(), ends.tolist()))


@dataclass(frozen=True)
class Utterance:
    """A synthesized sentence trimmed to its speech; ``segments`` are speech ranges in its samples."""

    samples: np.ndarray
    segments: list[tuple[int, int]]


class Voices:
    """espeak-ng synthesis at 16 kHz with a cache per (speaker, sentence)."""

    def __init__(self) -> None:
        if shutil.which("espeak-ng") is None:
            raise DiarizenLabError(
                "espeak-ng is not installed (install it: sudo apt-get install -y espeak-ng)"
            )
        self._cache: dict[tuple[Speaker, str], Utterance] = {}

    def say(self, speaker: Speaker, text: str) -> Utterance:
        key = (speaker, text)
        if key not in self._cache:
            self._cache[key] = self._synthesize(speaker, text)
        return self._cache[key]

    @staticmethod
    def _synthesize(speaker: Speaker, text: str) -> Utterance:
        import torch
        import torchaudio.functional

        result = subprocess.run(speaker.command(text), capture_output=True, check=False)
        if result.returncode != 0 or not result.stdout:
            raise DiarizenLabError(
                f"espeak-ng failed for voice {speaker.voice!r}: {result.stderr.decode(errors='replace').strip()}"
            )
        samples, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
        samples = torchaudio.functional.resample(torch.from_numpy(samples), rate, SAMPLE_RATE).numpy()
        segments = _speech_segments(samples)
        first, last = segments[0][0], segments[-1][1]
        return Utterance(samples[first:last], [(s - first, e - first) for s, e in segments])


def espeak_version() -> str:
    return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()


@dataclass(frozen=True)
class Meeting:
    name: str
    audio: np.ndarray
    turns: list[Turn]


def synthesize_meeting(
    name: str, speakers: list[Speaker], duration: float, overlap_ratio: float, rng: np.random.Generator,
    voices: Voices,
) -> Meeting:
    """One meeting of ``duration`` seconds among ``speakers`` (see the module docstring)."""
    length = round(duration * SAMPLE_RATE)
    audio = np.zeros(length, dtype=np.float64)
    turns: list[Turn] = []
    gains = 10 ** (rng.uniform(-6.0, 0.0, size=len(speakers)) / 20)
    talkativeness = rng.dirichlet(np.full(len(speakers), 2.0))
    # At most two utterances overlap: a new one may start once every utterance but the latest-ending one
    # (which ends at ``cursor``, spoken by ``previous``) is over, i.e. at ``free``.
    cursor = round(rng.uniform(0.2, 1.0) * SAMPLE_RATE)
    free, previous = 0, -1
    speech = overlap = 0
    while True:
        weights = talkativeness.copy()
        if previous >= 0:
            weights[previous] = 0.0
        who = int(rng.choice(len(speakers), p=weights / weights.sum()))
        utterance = voices.say(speakers[who], SENTENCES[int(rng.integers(len(SENTENCES)))])
        size = len(utterance.samples)
        if previous >= 0 and overlap < overlap_ratio * speech:
            start = cursor - round(rng.uniform(0.3, 0.9) * min(size, cursor - free))
        else:
            start = cursor + round(rng.uniform(0.15, 1.2) * SAMPLE_RATE)
        end = start + size
        if end > length - round(0.2 * SAMPLE_RATE):
            break
        audio[start:end] += gains[who] * 0.5 / np.abs(utterance.samples).max() * utterance.samples
        overlapped = max(0, min(cursor, end) - start)
        overlap += overlapped
        speech += size - overlapped
        turns += [
            Turn(name, (start + first) / SAMPLE_RATE, (start + last) / SAMPLE_RATE, speakers[who].name)
            for first, last in utterance.segments
        ]
        if end > cursor:
            free, cursor, previous = max(cursor, start), end, who
        else:
            free = end
    audio += rng.normal(0.0, 10 ** (NOISE_FLOOR_DB / 20), size=length)
    peak = np.abs(audio).max()
    if peak > 0.99:
        audio *= 0.99 / peak
    return Meeting(name, audio.astype(np.float32), turns)


def write_noise_and_rirs(out_dir: str | os.PathLike, seed: int = 0, files: int = 3, seconds: float = 6.0) -> None:
    """Write ``out_dir/noise/{noise,music}`` (``files`` recordings each, ``seconds`` long) and ``out_dir/rirs``
    (``files`` impulse responses): test material for the augmentation, not realistic acoustics.

    Noise is white noise through a random first-order low-pass filter; music, a sequence of random
    three-note chords; an impulse response, a unit direct path followed by a Gaussian tail decaying by 60 dB
    over a reverberation time drawn in [0.2, 0.8] s.
    """
    import scipy.signal

    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    length = round(seconds * SAMPLE_RATE)
    time = np.arange(length) / SAMPLE_RATE
    for kind in ("noise", "music", "rirs"):
        (out_dir / ("rirs" if kind == "rirs" else f"noise/{kind}")).mkdir(parents=True, exist_ok=True)
    for index in range(files):
        pole = rng.uniform(0.0, 0.95)
        noise = scipy.signal.lfilter([1.0 - pole], [1.0, -pole], rng.normal(size=length))
        notes = 220.0 * 2 ** (rng.integers(0, 24, size=(round(seconds * 2), 3)) / 12)  # a chord every 0.5 s
        music = np.sin(2 * np.pi * np.repeat(notes, SAMPLE_RATE // 2, axis=0)[:length] * time[:, None]).sum(axis=1)
        rt60 = rng.uniform(0.2, 0.8)
        tail = np.arange(round(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
        rir = rng.normal(scale=0.1, size=tail.size) * 10 ** (-3 * tail / rt60)
        rir[0] = 1.0
        for path, audio in (
            (out_dir / "noise" / "noise" / f"noise_{index:02d}.wav", noise),
            (out_dir / "noise" / "music" / f"music_{index:02d}.wav", music),
            (out_dir / "rirs" / f"rir_{index:02d}.wav", rir),
        ):
            sf.write(path, (0.5 * audio / np.abs(audio).max()).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")


def synthesize_corpus(
    out_dir: str | os.PathLike,
    minutes: float,
    seed: int = 0,
    overlap_ratio: float = 0.15,
    meeting_minutes: float = 2.0,
    noise: bool = False,
) -> dict[str, list[str]]:
    """Write a synthetic corpus of about ``minutes`` minutes (80/10/10 % train/dev/test) to ``out_dir``.

    Each split has ``round(split minutes / meeting_minutes)`` meetings (at least one) of equal duration;
    ``noise`` adds the noise and impulse-response folders of :func:`write_noise_and_rirs`.
    Returns the meeting names per split. Replaces ``out_dir`` atomically.
    """
    if minutes <= 0 or meeting_minutes <= 0:
        raise DiarizenLabError(f"minutes ({minutes}) and meeting_minutes ({meeting_minutes}) must be positive")
    if not 0 <= overlap_ratio < 1:
        raise DiarizenLabError(f"overlap_ratio must be in [0, 1), got {overlap_ratio}")
    voices = Voices()
    rng = np.random.default_rng(seed)
    meetings: dict[str, list[str]] = {}
    with atomic_dir(out_dir) as tmp:
        for split, fraction in SPLITS.items():
            pool = [s for s in SPEAKERS if s.split == split]
            seconds = minutes * 60 * fraction
            count = max(1, round(seconds / (meeting_minutes * 60)))
            split_dir = tmp / split
            (split_dir / "wav").mkdir(parents=True)
            scp, turns, uem = {}, [], {}
            for index in range(count):
                num_speakers = int(rng.integers(2, min(4, len(pool)) + 1))
                chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=num_speakers, replace=False))]
                meeting = synthesize_meeting(
                    f"{split}_{index:03d}", chosen, seconds / count, overlap_ratio, rng, voices
                )
                sf.write(split_dir / "wav" / f"{meeting.name}.wav", meeting.audio, SAMPLE_RATE, subtype="PCM_16")
                scp[meeting.name] = Path("wav") / f"{meeting.name}.wav"
                turns += meeting.turns
                uem[meeting.name] = [(0.0, len(meeting.audio) / SAMPLE_RATE)]
            write_wav_scp(split_dir / "wav.scp", scp)
            write_rttm(split_dir / "rttm", turns)
            write_uem(split_dir / "uem", uem)
            meetings[split] = sorted(scp)
        settings = {
            "minutes": minutes, "seed": seed, "overlap_ratio": overlap_ratio, "meeting_minutes": meeting_minutes,
            "sample_rate": SAMPLE_RATE, "espeak_ng": espeak_version(), "meetings": meetings,
        }
        if noise:
            write_noise_and_rirs(tmp, seed)
            settings["noise"] = ["noise", "rirs"]
        (tmp / "synth.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return meetings
