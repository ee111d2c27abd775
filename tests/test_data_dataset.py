"""Chunked dataset: chunking at UEM edges, frame labels, speaker selection, audio reading, batching."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from diarizen_lab.data.dataset import ChunkDataset, chunk_starts, collate
from diarizen_lab.data.frames import FrameGeometry
from diarizen_lab.data.targets import powerset_targets
from diarizen_lab.data.task import Task
from diarizen_lab.errors import DiarizenLabError, InputError

RATE = 16000
# Binary fractions, so that frame centres (0.0625 + 0.125 f) and turn edges compare exactly.
FRAMES = FrameGeometry(num_frames=10, step=0.125, duration=0.25, start=-0.0625)
CHUNK = 1.25

TURNS = """\
SPEAKER rec 1 0.6 0.7 <NA> <NA> c_spk <NA> <NA>
SPEAKER rec 1 0.3125 0.25 <NA> <NA> b_spk <NA> <NA>
SPEAKER rec 1 0.0 0.2 <NA> <NA> a_spk <NA> <NA>
SPEAKER rec 1 1.3125 0.1875 <NA> <NA> d_spk <NA> <NA>
"""


def ramp(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    """Sample n of channel c is (n / 1e6) * (c + 1): every sample tells where it was read from."""
    n = np.arange(round(seconds * rate), dtype=np.float64)[:, None] / 1e6
    return (n * np.arange(1, channels + 1)).astype(np.float32)


def data_dir(tmp_path: Path, rttm: str = TURNS, uem: str | None = None, seconds: float = 2.5,
             rate: int = RATE, channels: int = 1) -> Path:
    sf.write(tmp_path / "rec.wav", ramp(seconds, rate, channels), rate, subtype="FLOAT")
    (tmp_path / "wav.scp").write_text("rec rec.wav\n")
    (tmp_path / "rttm").write_text(rttm)
    if uem is not None:
        (tmp_path / "uem").write_text(uem)
    return tmp_path


def task(chunk_size: float = CHUNK, max_speakers: int = 2) -> Task:
    return Task(chunk_size=chunk_size, max_speakers_per_chunk=max_speakers, max_speakers_per_frame=1)


def dataset(path: Path, max_speakers: int = 2, shift: float = CHUNK, **kwargs) -> ChunkDataset:
    return ChunkDataset(path, shift, task=task(max_speakers=max_speakers), frames=FRAMES, **kwargs)


def rows(*active: list[int]) -> np.ndarray:
    """Expected labels: column j is active on the frames listed in ``active[j]``."""
    labels = np.zeros((FRAMES.num_frames, len(active)), dtype=np.float32)
    for column, frames in enumerate(active):
        labels[frames, column] = 1
    return labels


def test_frame_centres_by_hand():
    assert FRAMES.centers().tolist() == [0.0625 + 0.125 * f for f in range(10)]
    assert FRAMES.end == 1.3125
    window = FRAMES.sliding_window(offset=2.0)
    assert (window.start, window.duration, window.step) == (1.9375, 0.25, 0.125)


def test_labels_frame_by_frame_against_hand_computed_case(tmp_path):
    # a_spk [0, 0.2): centres 0.0625, 0.1875 -> frames 0-1
    # b_spk [0.3125, 0.5625): frame 2 (centre on the start: included) and 3; frame 4 (centre on the end: excluded)
    # c_spk [0.6, 1.3): frames 5-9; in the second chunk (from 1.25) it covers no centre (first is 1.3125)
    # d_spk [1.3125, 1.5): second chunk, frames 0-1
    items = dataset(data_dir(tmp_path), max_speakers=3)
    assert len(items) == 2
    first, second = items[0], items[1]
    assert (first["recording"], first["start"], second["start"]) == ("rec", 0.0, 1.25)
    # most talkative first (c: 5 frames), then the tie a/b (2 frames each) in label order
    np.testing.assert_array_equal(first["labels"].numpy(), rows([5, 6, 7, 8, 9], [0, 1], [2, 3]))
    np.testing.assert_array_equal(second["labels"].numpy(), rows([0, 1], [], []))
    assert first["labels"].dtype == torch.float32


def test_max_speakers_keeps_the_most_talkative(tmp_path):
    items = dataset(data_dir(tmp_path), max_speakers=2)
    np.testing.assert_array_equal(items[0]["labels"].numpy(), rows([5, 6, 7, 8, 9], [0, 1]))
    only_one = dataset(data_dir(tmp_path), max_speakers=1)
    np.testing.assert_array_equal(only_one[0]["labels"].numpy(), rows([5, 6, 7, 8, 9]))


def test_labels_do_not_depend_on_rttm_line_order(tmp_path):
    reordered = "".join(reversed(TURNS.splitlines(keepends=True)))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = dataset(data_dir(tmp_path / "a"), max_speakers=3)
    b = dataset(data_dir(tmp_path / "b", rttm=reordered), max_speakers=3)
    for i in range(len(a)):
        assert torch.equal(a[i]["labels"], b[i]["labels"])


def test_labels_match_a_brute_force_computation_on_random_turns(tmp_path):
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 19, size=80)
    ends = np.minimum(starts + rng.exponential(1.0, size=80), 20)
    speakers = rng.integers(0, 6, size=80)
    rttm = "".join(f"SPEAKER rec 1 {s:.3f} {e - s:.3f} <NA> <NA> spk{k} <NA> <NA>\n"
                   for s, e, k in zip(starts, ends, speakers))
    frames = FrameGeometry(num_frames=117, step=0.017, duration=0.06, start=-0.01)
    chunks = ChunkDataset(data_dir(tmp_path, rttm=rttm, seconds=20.0), 0.7, task=task(2.0, 3), frames=frames)
    # the times as read back from the RTTM
    turns = [(float(f"{s:.3f}"), float(f"{s:.3f}") + float(f"{e - s:.3f}"), k)
             for s, e, k in zip(starts, ends, speakers)]
    centres = frames.start + frames.duration / 2 + frames.step * np.arange(frames.num_frames)
    for i in range(len(chunks)):
        item = chunks[i]
        times = item["start"] + centres
        active = np.array([[any(s <= t < e for s, e, k in turns if k == speaker) for t in times]
                           for speaker in range(6)], dtype=np.float32)
        counts = active.sum(axis=1)
        kept = [s for s in sorted(range(6), key=lambda s: -counts[s]) if counts[s] > 0][:3]
        expected = np.zeros((frames.num_frames, 3), dtype=np.float32)
        expected[:, : len(kept)] = active[kept].T
        np.testing.assert_array_equal(item["labels"].numpy(), expected, err_msg=f"chunk {i}")


def test_frame_geometry_from_a_real_pyannote_model(tmp_path):
    from pyannote.audio.models.segmentation import PyanNet

    model = PyanNet(sample_rate=RATE)  # random init, no download
    frames = FrameGeometry.from_model(model, 5.0)
    # SincNet + pooling: a 991-sample receptive field every 270 samples, the first centred on sample 495
    assert frames == FrameGeometry(num_frames=293, step=270 / RATE, duration=991 / RATE, start=0.0)
    assert frames.num_frames == model.sincnet(torch.zeros(1, 1, 5 * RATE)).shape[-1]

    sf.write(tmp_path / "rec.wav", np.zeros(5 * RATE, dtype=np.float32), RATE)
    (tmp_path / "wav.scp").write_text("rec rec.wav\n")
    (tmp_path / "rttm").write_text("SPEAKER rec 1 1.0 1.0 <NA> <NA> s <NA> <NA>\n")
    labels = ChunkDataset(tmp_path, 5.0, task=task(5.0), frames=frames)[0]["labels"].numpy()
    # centre of frame f at (495.5 + 270 f) / 16000 s lies in [1, 2) s for 57.4 <= f < 116.7
    np.testing.assert_array_equal(np.flatnonzero(labels[:, 0]), np.arange(58, 117))
    assert not labels[:, 1].any()


def test_chunk_starts_at_span_edges():
    assert chunk_starts(0, 100, 40, 40) == [0, 40, 60]  # last chunk aligned to the span end
    assert chunk_starts(0, 120, 40, 40) == [0, 40, 80]  # exact fit: no extra chunk
    assert chunk_starts(10, 80, 40, 25) == [10, 35, 40]
    assert chunk_starts(5, 30, 40, 10) == [5]  # shorter than a chunk: one padded chunk


def test_chunks_stay_inside_uem_spans_and_pad_short_spans(tmp_path):
    uem = "rec 1 0.25 2.1\nrec 1 2.25 2.5\n"
    chunks = dataset(data_dir(tmp_path, rttm="SPEAKER rec 1 2.3 0.2 <NA> <NA> a <NA> <NA>\n", uem=uem), shift=0.5)
    items = [chunks[i] for i in range(len(chunks))]
    assert [item["start"] for item in items] == [0.25, 0.75, 0.85, 2.25]
    for item in items[:3]:
        first = round(item["start"] * RATE)
        np.testing.assert_array_equal(item["waveform"][0].numpy(), ramp(2.5)[first: first + 20000, 0])
    padded = items[3]["waveform"][0].numpy()
    np.testing.assert_array_equal(padded[:4000], ramp(2.5)[36000:40000, 0])  # 2.25-2.5 s: the span
    assert not padded[4000:].any()  # zero padding, though the file does not go on
    # the turn [2.3, 2.5) is labeled on centres 0.0625 and 0.1875 after 2.25; nothing after the span
    np.testing.assert_array_equal(items[3]["labels"].numpy(), rows([0, 1], []))


def test_padding_is_silent_even_where_the_next_span_has_speech(tmp_path):
    uem = "rec 1 0 0.5\nrec 1 1.0 2.5\n"
    items = dataset(data_dir(tmp_path, rttm="SPEAKER rec 1 0.25 1.0 <NA> <NA> a <NA> <NA>\n", uem=uem))
    assert [items[i]["start"] for i in range(len(items))] == [0.0, 1.0, 1.25]
    first = items[0]
    assert not first["waveform"][0, 8000:].any()
    # turn [0.25, 1.25) cut to [0.25, 0.5) and [1.0, 1.25): only centres 0.3125 and 0.4375 in the first chunk,
    # none of the padding (centres 1.0625 and 1.1875 would otherwise be active)
    np.testing.assert_array_equal(first["labels"].numpy(), rows([2, 3], []))
    np.testing.assert_array_equal(items[1]["labels"].numpy(), rows([0, 1], []))


def test_waveform_is_read_from_the_chosen_channel(tmp_path):
    path = data_dir(tmp_path, channels=3)
    item = dataset(path, channel=2)[1]
    np.testing.assert_array_equal(item["waveform"][0].numpy(), ramp(2.5, channels=3)[20000:40000, 2])
    assert item["waveform"].shape == (1, 20000) and item["waveform"].dtype == torch.float32
    with pytest.raises(InputError) as error:
        dataset(path, channel=3)
    assert str(error.value) == (
        f"{path}/wav.scp: 1 recordings have no channel 3 (e.g. rec: 3 channels) (set channel below 3)"
    )


def test_sample_rate_mismatch_is_an_error_unless_resampling(tmp_path):
    time = np.arange(2 * 8000) / 8000
    sf.write(tmp_path / "rec.wav", (0.5 * np.sin(2 * np.pi * 440 * time)).astype(np.float32), 8000,
             subtype="FLOAT")
    (tmp_path / "wav.scp").write_text("rec rec.wav\n")
    (tmp_path / "rttm").write_text("")
    with pytest.raises(InputError) as error:
        dataset(tmp_path)
    assert str(error.value) == (
        f"{tmp_path}/wav.scp: [task] sample_rate is 16000 Hz but 1 recordings are not (e.g. rec: 8000 Hz) "
        "(resample the audio (sox in.wav -r 16000 out.wav) or set resample = true)"
    )
    items = dataset(tmp_path, resample=True, shift=0.5)
    waveform = items[1]["waveform"][0].numpy()  # 0.5 s - 1.75 s
    assert waveform.shape == (20000,)
    expected = 0.5 * np.sin(2 * np.pi * 440 * (0.5 + np.arange(20000) / RATE))
    np.testing.assert_allclose(waveform[200:-200], expected[200:-200], atol=0.02)


def test_frames_must_match_chunk_size(tmp_path):
    with pytest.raises(DiarizenLabError, match=r"covers 1.312 s but \[task\] chunk_size is 5.0 s"):
        ChunkDataset(data_dir(tmp_path), 5.0, task=task(5.0), frames=FRAMES)


def test_without_frames_items_are_audio_only(tmp_path):
    items = ChunkDataset(data_dir(tmp_path), CHUNK, task=task())
    assert sorted(items[0]) == ["recording", "start", "waveform"]
    batch = collate([items[0], items[1]])
    assert "labels" not in batch and batch["waveform"].shape == (2, 1, 20000)


def test_batches_are_deterministic_with_workers(tmp_path):
    items = dataset(data_dir(tmp_path, seconds=10.0), max_speakers=3, shift=0.25)

    def batches(workers: int) -> list[dict]:
        loader = DataLoader(items, batch_size=4, shuffle=True, num_workers=workers, collate_fn=collate,
                            generator=torch.Generator().manual_seed(7))
        return list(loader)

    with_workers, without = batches(2), batches(0)
    assert len(with_workers) == len(without) == 9  # 35 chunks
    for a, b in zip(with_workers, without):
        assert torch.equal(a["waveform"], b["waveform"]) and torch.equal(a["labels"], b["labels"])
        assert a["recording"] == b["recording"] and torch.equal(a["start"], b["start"])
    batch = with_workers[0]
    assert batch["waveform"].shape == (4, 1, 20000)
    assert batch["labels"].shape == (4, 10, 3)
    assert batch["start"].dtype == torch.float64
    index = round(batch["start"][0].item() / 0.25)
    assert torch.equal(batch["waveform"][0], items[index]["waveform"])
    # picklable as is (workers started with "spawn" receive a copy)
    copy = pickle.loads(pickle.dumps(items))
    assert torch.equal(copy[index]["labels"], items[index]["labels"])


def test_labels_to_permutation_invariant_powerset_targets(tmp_path):
    from pyannote.audio.utils.powerset import Powerset

    items = dataset(data_dir(tmp_path, seconds=2.5), max_speakers=3, shift=0.25)
    labels = collate([items[i] for i in range(len(items))])["labels"]  # (B, F, 3)
    powerset = Powerset(3, 2)
    # a perfect prediction, up to a speaker permutation
    permutation = [2, 0, 1]
    scores = torch.log(powerset.to_powerset(labels[:, :, permutation]).clamp(min=1e-6))
    targets = powerset_targets(powerset, scores, labels)
    assert targets.shape == (labels.shape[0], FRAMES.num_frames, powerset.num_powerset_classes)
    assert torch.equal(targets.sum(dim=-1), torch.ones(labels.shape[:2]))
    assert torch.equal(targets.argmax(dim=-1), scores.argmax(dim=-1))
    assert torch.equal(powerset.to_multilabel(targets), labels[:, :, permutation])
