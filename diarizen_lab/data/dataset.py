"""Fixed-length training chunks with frame-level multi-speaker labels.

Chunking: inside each UEM span, chunks of ``task.chunk_size`` seconds start every ``chunk_shift`` seconds from the
span start. When the last regular chunk stops short of the span end, one more chunk aligned to the span end
is added, so every second of a span is covered. A span shorter than ``chunk_size`` gives a single chunk at
its start, zero-padded (audio outside the UEM is never read and labeled silent).

Labels follow the rule in :mod:`diarizen_lab.data.frames`: frame ``f`` is active for a speaker when the
centre of its receptive field lies inside one of the speaker's turns. The ``task.max_speakers_per_chunk`` most
talkative speakers of a chunk (most active frames; ties by label order) fill the label columns, most
talkative first; missing speakers are all-zero columns.

Indexing is pure (an item depends only on its index) and the dataset holds no open file, so it is safe with
``num_workers > 0`` and with DDP samplers; shuffling is left to the sampler (seed it for determinism).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from diarizen_lab.data.datadir import DataDir, Recording
from diarizen_lab.data.frames import FrameGeometry
from diarizen_lab.data.task import Task
from diarizen_lab.errors import DiarizenLabError, InputError


@dataclass(frozen=True)
class _Turns:
    """Turns of one recording sorted by start: seconds, and speakers as indices into the sorted labels.

    Plain lists: the few turns of a chunk are found and labeled faster with ``bisect`` than with numpy.
    """

    starts: list[float]
    ends: list[float]
    speakers: list[int]
    num_speakers: int
    longest: float

    @classmethod
    def of(cls, recording: Recording) -> _Turns:
        index = {label: i for i, label in enumerate(recording.speakers)}
        turns = sorted(recording.turns, key=lambda t: t.start)
        return cls(
            starts=[t.start for t in turns],
            ends=[t.end for t in turns],
            speakers=[index[t.speaker] for t in turns],
            num_speakers=len(index),
            longest=max((t.duration for t in turns), default=0.0),
        )


def chunk_starts(span_start: int, span_end: int, chunk: int, shift: int) -> list[int]:
    """Chunk start samples inside ``[span_start, span_end)`` (see the module docstring for the rule)."""
    length = span_end - span_start
    if length < chunk:
        return [span_start]
    starts = list(range(span_start, span_end - chunk + 1, shift))
    if starts[-1] + chunk < span_end:
        starts.append(span_end - chunk)
    return starts


class ChunkDataset(Dataset):
    """Chunks of a data directory, each ``{"waveform", "labels", "recording", "start"}``.

    Parameters
    ----------
    data_dir : directory with ``wav.scp``, ``rttm`` and optionally ``uem``.
    chunk_shift : hop between chunk starts, in seconds.
    channel : channel to read from multi-channel files.
    resample : audio at another sample rate than ``task.sample_rate`` is an error unless ``True`` (then it is
        resampled on the fly).
    task : sample rate, chunk duration and label columns (``max_speakers_per_chunk``); supplied by the recipe.
    frames : output frame geometry of the model (``FrameGeometry.from_model(model, task.chunk_size)``);
        ``None`` for objectives that use no labels (items then have no ``labels``).

    Items: ``waveform`` float32 ``(1, task.chunk_samples)``, ``labels`` float32
    ``(frames.num_frames, task.max_speakers_per_chunk)``, ``recording`` str, ``start`` float (seconds).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        chunk_shift: float,
        channel: int = 0,
        resample: bool = False,
        *,
        task: Task,
        frames: FrameGeometry | None = None,
    ) -> None:
        if chunk_shift <= 0:
            raise DiarizenLabError(f"chunk_shift must be positive, got {chunk_shift}")
        if frames is not None and abs(frames.end - task.chunk_size) > frames.step + frames.duration:
            raise DiarizenLabError(
                f"the frame geometry covers {frames.end:.3f} s but [task] chunk_size is {task.chunk_size} s "
                "(build it with FrameGeometry.from_model(model, task.chunk_size))"
            )
        self.data_dir = DataDir.load(data_dir)
        self.task = task
        self.chunk_shift = chunk_shift
        self.sample_rate = task.sample_rate
        self.channel = channel
        self.resample = resample
        self.frames = frames
        self._check_audio()

        self.recordings: list[Recording] = list(self.data_dir.recordings.values())
        self._turns = [_Turns.of(recording) for recording in self.recordings]
        self._centers = [] if frames is None else frames.centers().tolist()
        self._chunk_samples = task.chunk_samples
        sample_rate = task.sample_rate
        shift = round(chunk_shift * sample_rate)
        index_recording, index_start, index_end = [], [], []
        for r, recording in enumerate(self.recordings):
            for span_start, span_end in recording.spans:
                first, last = round(span_start * sample_rate), round(span_end * sample_rate)
                for start in chunk_starts(first, last, self._chunk_samples, shift):
                    index_recording.append(r)
                    index_start.append(start)
                    index_end.append(min(start + self._chunk_samples, last))
        self._index_recording = np.array(index_recording, dtype=np.int64)
        self._index_start = np.array(index_start, dtype=np.int64)
        self._index_end = np.array(index_end, dtype=np.int64)

    def _check_audio(self) -> None:
        recordings = self.data_dir.recordings.values()
        scp = self.data_dir.path / "wav.scp"
        few_channels = [r for r in recordings if r.num_channels <= self.channel]
        if few_channels:
            r = few_channels[0]
            raise InputError(
                f"{len(few_channels)} recordings have no channel {self.channel} (e.g. {r.name}: "
                f"{r.num_channels} channels)", path=scp, fix=f"set channel below {r.num_channels}",
            )
        other_rate = [r for r in recordings if r.sample_rate != self.sample_rate]
        if other_rate and not self.resample:
            r = other_rate[0]
            raise InputError(
                f"[task] sample_rate is {self.sample_rate} Hz but {len(other_rate)} recordings are not (e.g. "
                f"{r.name}: {r.sample_rate} Hz)", path=scp,
                fix=f"resample the audio (sox in.wav -r {self.sample_rate} out.wav) or set resample = true",
            )

    def __len__(self) -> int:
        return len(self._index_start)

    def chunk(self, index: int) -> tuple[Recording, int, int]:
        """Recording of chunk ``index`` and the samples ``[start, end)`` read for it (at ``sample_rate``;
        ``end - start`` is less than a chunk when the chunk is zero-padded)."""
        recording = self.recordings[self._index_recording[index]]
        return recording, int(self._index_start[index]), int(self._index_end[index])

    def __getitem__(self, index: int) -> dict:
        recording, start, end = self.chunk(index)
        item = {
            "waveform": torch.from_numpy(self._read(recording, start, end)),
            "recording": recording.name,
            "start": start / self.sample_rate,
        }
        if self.frames is not None:
            item["labels"] = torch.from_numpy(
                self._labels(self._index_recording[index], start / self.sample_rate, end / self.sample_rate)
            )
        return item

    def _read(self, recording: Recording, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` (at ``sample_rate``) of the chosen channel, zero-padded to a chunk."""
        waveform = np.zeros((1, self._chunk_samples), dtype=np.float32)
        if recording.sample_rate != self.sample_rate:
            samples = self._read_resampled(recording, start, end)
            waveform[0, : len(samples)] = samples
        elif recording.num_channels == 1:  # straight into the output buffer, (1, T) seen as (T, 1)
            sf.read(str(recording.path), start=start, dtype="float32", out=waveform.T[: end - start])
        else:
            samples, _ = sf.read(
                str(recording.path), start=start, frames=end - start, dtype="float32", always_2d=True
            )
            waveform[0, : len(samples)] = samples[:, self.channel]
        return waveform

    def _read_resampled(self, recording: Recording, start: int, end: int) -> np.ndarray:
        import torchaudio.functional

        ratio = recording.sample_rate / self.sample_rate
        source_start = int(np.floor(start * ratio))
        source_frames = int(np.ceil((end - start) * ratio))
        samples, _ = sf.read(
            str(recording.path), start=source_start, frames=source_frames, dtype="float32", always_2d=True
        )
        resampled = torchaudio.functional.resample(
            torch.from_numpy(np.ascontiguousarray(samples[:, self.channel])), recording.sample_rate,
            self.sample_rate,
        )
        return resampled.numpy()[: end - start]

    def _labels(self, recording_index: int, start: float, end: float) -> np.ndarray:
        """Labels of the chunk starting at ``start`` seconds, whose audio stops at ``end`` (padding after)."""
        turns, centers = self._turns[recording_index], self._centers
        activity = np.zeros((turns.num_speakers, self.frames.num_frames), dtype=np.float32)
        # only turns starting in [start - longest turn, end) can reach the chunk
        for i in range(bisect_left(turns.starts, start - turns.longest), bisect_left(turns.starts, end)):
            first = bisect_left(centers, turns.starts[i] - start)
            last = bisect_left(centers, min(turns.ends[i], end) - start)
            activity[turns.speakers[i], first:last] = 1.0
        counts = activity.sum(axis=1).tolist()
        talkative = sorted((s for s in range(turns.num_speakers) if counts[s] > 0), key=lambda s: -counts[s])
        labels = np.zeros((self.frames.num_frames, self.task.max_speakers_per_chunk), dtype=np.float32)
        kept = talkative[: self.task.max_speakers_per_chunk]
        labels[:, : len(kept)] = activity[kept].T
        return labels


def collate(items: list[dict]) -> dict:
    """Stack items into a batch: ``waveform`` (B, 1, T), ``labels`` (B, F, S) when items have labels,
    ``recording`` list[str], ``start`` float64 (B,)."""
    batch = {
        "waveform": torch.stack([item["waveform"] for item in items]),
        "recording": [item["recording"] for item in items],
        "start": torch.tensor([item["start"] for item in items], dtype=torch.float64),
    }
    if "labels" in items[0]:
        batch["labels"] = torch.stack([item["labels"] for item in items])
    return batch
