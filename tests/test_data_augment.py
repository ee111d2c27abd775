"""Training augmentation: deterministic per (seed, epoch, chunk), never on validation, SNR and gain in range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from diarizen_lab.data.augment import Augmentation
from diarizen_lab.data.dataset import ChunkDataset, collate
from diarizen_lab.data.frames import FrameGeometry
from diarizen_lab.data.synth import write_noise_and_rirs
from diarizen_lab.data.task import Task
from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.training.loaders import EpochLoader, validation_loader
from diarizen_lab.training.recipe import load_training_config, train
from diarizen_lab.training.run_dir import read_metrics
from diarizen_lab.training.settings import DataLoaderSettings

RATE = 16000
FRAMES = FrameGeometry(num_frames=10, step=0.125, duration=0.25, start=-0.0625)
CHUNK = 1.25
TASK = Task(chunk_size=CHUNK, max_speakers_per_chunk=2)
CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def material(tmp_path_factory) -> Path:
    """A 20 s recording (slowly modulated white noise, two speakers) and the synthetic noise / RIR folders."""
    root = tmp_path_factory.mktemp("augment")
    rng = np.random.default_rng(0)
    time = np.arange(20 * RATE) / RATE
    audio = 0.1 * rng.normal(size=time.size) * (1.5 + np.sin(2 * np.pi * 0.5 * time))
    (root / "data").mkdir()
    sf.write(root / "data" / "rec.wav", audio.astype(np.float32), RATE, subtype="FLOAT")
    (root / "data" / "wav.scp").write_text("rec rec.wav\n")
    (root / "data" / "rttm").write_text(
        "SPEAKER rec 1 0.0 12.0 <NA> <NA> a <NA> <NA>\nSPEAKER rec 1 8.0 12.0 <NA> <NA> b <NA> <NA>\n"
    )
    write_noise_and_rirs(root, seed=0)
    return root


def chunks(material: Path, augmentation: Augmentation | None = None) -> ChunkDataset:
    return ChunkDataset(material / "data", CHUNK, task=TASK, frames=FRAMES, augmentation=augmentation)


def full(material: Path) -> Augmentation:
    return Augmentation(rir_dir=material / "rirs", reverb_probability=0.5, noise_dir=material / "noise",
                        noise_probability=0.8, gain_db=(-6.0, 6.0), gain_probability=0.5)


def waveforms(dataset: ChunkDataset) -> torch.Tensor:
    return torch.stack([dataset[i]["waveform"] for i in range(len(dataset))])


def test_deterministic_per_seed_and_epoch_and_different_across_epochs(material):
    plain = waveforms(chunks(material))
    dataset = chunks(material, full(material))
    assert torch.equal(waveforms(dataset), plain)  # no epoch given yet: untouched
    dataset.set_epoch(seed=0, epoch=1)
    first = waveforms(dataset)
    again = chunks(material, full(material))
    again.set_epoch(seed=0, epoch=1)
    assert torch.equal(waveforms(again), first)  # another instance, same seed and epoch: same bytes
    changed = (first - plain).abs().amax(dim=(1, 2)) > 1e-4
    assert 0.7 < changed.float().mean() < 1.0  # most chunks are augmented, a few (all effects skipped) are not
    assert torch.isfinite(first).all()
    dataset.set_epoch(seed=0, epoch=2)
    assert not torch.equal(waveforms(dataset), first)
    dataset.set_epoch(seed=1, epoch=1)
    assert not torch.equal(waveforms(dataset), first)
    assert torch.equal(dataset[3]["labels"], chunks(material)[3]["labels"])  # labels are never touched


def test_training_loader_augments_the_same_whatever_the_workers_and_resume_and_validation_never(material):
    settings = DataLoaderSettings(batch_size=4, num_workers=0, persistent_workers=True)
    workers = DataLoaderSettings(batch_size=4, num_workers=2, persistent_workers=True)
    run = EpochLoader(chunks(material, full(material)), settings, seed=7, collate_fn=collate)
    epoch1 = [batch["waveform"] for batch in run.epoch(1)]
    epoch2 = [batch["waveform"] for batch in run.epoch(2)]
    # a resumed run starts at epoch 2 in a fresh process, here with two (non-persistent) workers
    resumed = EpochLoader(chunks(material, full(material)), workers, seed=7, collate_fn=collate)
    assert not resumed.loader.persistent_workers
    assert all(torch.equal(a, b) for a, b in zip(epoch2, [batch["waveform"] for batch in resumed.epoch(2)]))
    assert all(torch.equal(a, b) for a, b in zip(epoch1, [batch["waveform"] for batch in resumed.epoch(1)]))
    assert not all(torch.equal(a, b) for a, b in zip(epoch1, epoch2))
    validation = validation_loader(chunks(material, full(material)), settings, collate_fn=collate)
    plain = validation_loader(chunks(material), settings, collate_fn=collate)
    assert all(torch.equal(a["waveform"], b["waveform"]) for a, b in zip(validation, plain))


def test_noise_is_added_at_an_snr_in_range(material):
    dataset = chunks(material, Augmentation(noise_dir=material / "noise", snr_db=(5.0, 10.0), noise_probability=1.0))
    plain = waveforms(chunks(material)).double()
    dataset.set_epoch(seed=0, epoch=1)
    noise = waveforms(dataset).double() - plain
    snr = 10 * torch.log10(plain.pow(2).sum(dim=(1, 2)) / noise.pow(2).sum(dim=(1, 2)))
    assert snr.min() >= 5.0 - 1e-3 and snr.max() <= 10.0 + 1e-3
    assert snr.min() < 6.0 and snr.max() > 9.0  # drawn over the whole range


def test_gain_and_reverberation(material):
    gain = chunks(material, Augmentation(gain_db=(-6.0, 6.0), gain_probability=1.0))
    plain = waveforms(chunks(material))
    gain.set_epoch(seed=0, epoch=1)
    ratio = waveforms(gain).abs().amax(dim=(1, 2)) / plain.abs().amax(dim=(1, 2))
    db = 20 * torch.log10(ratio)
    assert db.min() >= -6.0 - 1e-4 and db.max() <= 6.0 + 1e-4 and db.max() - db.min() > 3.0
    reverb = chunks(material, Augmentation(rir_dir=material / "rirs", reverb_probability=1.0))
    reverb.set_epoch(seed=0, epoch=1)
    wet, dry = waveforms(reverb)[4, 0].double(), plain[4, 0].double()
    # realigned on the direct path: the reverberant chunk correlates best with the dry one at lag 0
    lags = range(-200, 201, 5)
    correlation = [float(torch.dot(torch.roll(dry, lag), wet)) for lag in lags]
    assert list(lags)[int(np.argmax(correlation))] == 0
    assert not torch.allclose(wet, dry, atol=1e-3)


def test_folders_are_checked_when_the_config_is_loaded(material, tmp_path):
    path = CONF / "tiny_wavlm_conformer_augmented.toml"
    here = [f'train_dataset.args.augmentation.noise_dir="{material / "noise"}"',
            f'train_dataset.args.augmentation.rir_dir="{material / "rirs"}"']
    config = load_training_config(path, here)
    augmentation = config["train_dataset"].args["augmentation"]
    assert isinstance(augmentation, Augmentation) and len(augmentation.noises) == 6 and len(augmentation.rirs) == 3
    assert "augmentation" not in config["validation_dataset"].args
    (tmp_path / "empty").mkdir()
    for folder, message in ((tmp_path / "missing", "no such folder"), (tmp_path / "empty", "no audio file")):
        with pytest.raises(InputError) as error:
            load_training_config(path, [here[1], f'train_dataset.args.augmentation.noise_dir="{folder}"'])
        text = str(error.value)
        assert f"tiny_wavlm_conformer_augmented.toml:" in text and "[train_dataset.args.augmentation]" in text
        assert f"noise_dir: {message}" in text and str(folder) in text and "\n" not in text
    with pytest.raises(InputError, match=r"unknown key 'snr'"):
        load_training_config(path, [*here, "train_dataset.args.augmentation.snr=[1, 2]"])
    text = path.read_text() + f'\n[validation_dataset.args.augmentation]\nnoise_dir = "{material / "noise"}"\n'
    (tmp_path / "validation.toml").write_text(text.replace('root = ".."', f'root = "{CONF.parent}"'))
    line = len(text.splitlines()) - 1
    with pytest.raises(InputError) as error:  # validation is never augmented: refused, not silently ignored
        load_training_config(tmp_path / "validation.toml", here)
    assert str(error.value) == (
        f"{tmp_path / 'validation.toml'}:{line}: [validation_dataset.args] 'augmentation' is not allowed here: "
        "validation is never augmented (augment [train_dataset] only) (remove 'augmentation')"
    )
    with pytest.raises(DiarizenLabError, match=r"snr_db must be \[low, high\] with low <= high"):
        Augmentation(noise_dir=material / "noise", snr_db=(10.0, 5.0))
    with pytest.raises(DiarizenLabError, match="enables nothing"):
        Augmentation()


def test_noise_at_another_sample_rate_is_refused(material, tmp_path):
    sf.write(tmp_path / "n.wav", np.zeros(800, dtype=np.float32) + 0.1, 8000)
    with pytest.raises(InputError, match=r"n.wav: 1 file\(s\) of noise_dir are not at 16000 Hz \(this one: 8000 Hz\)"):
        chunks(material, Augmentation(noise_dir=tmp_path))


def test_a_resumed_augmented_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    # the training-loop test's tiny run and its crash in epoch 2, with every effect of the augmentation on
    from test_training_loop import without_time, write_config
    from diarizen_lab.cli import main

    corpus = tmp_path / "synth"
    assert main(["data", "synth", str(corpus), "--minutes", "1", "--meeting-minutes", "0.5", "--noise"]) == 0
    assert sorted(p.parent.name for p in corpus.glob("noise/*/*.wav")) == ["music"] * 3 + ["noise"] * 3
    extra = f"""
[train_dataset.args.augmentation]
rir_dir = "{corpus / 'rirs'}"
noise_dir = "{corpus / 'noise'}"
gain_db = [-6.0, 6.0]
"""
    straight = train(load_training_config(write_config(tmp_path, corpus, "straight", extra)))
    path = write_config(tmp_path, corpus, "crashed", extra)
    with pytest.raises(KeyboardInterrupt):
        train(load_training_config(path, ['objective.path="test_training_loop.CrashInEpochTwo"']))
    config = load_training_config(path)
    resumed = train(config, resume=True, accept_changes=True)  # the crash was a change of objective
    assert (resumed.epoch, resumed.step) == (straight.epoch, straight.step) == (3, 18)
    rows = [read_metrics(tmp_path / "exp" / name / "metrics.jsonl") for name in ("straight", "crashed")]
    assert without_time(rows[0]) == without_time(rows[1])
    plain = train(load_training_config(write_config(tmp_path, corpus, "plain"), ["trainer.max_epochs=1"]))
    assert plain.step == 6
    plain_loss = read_metrics(tmp_path / "exp" / "plain" / "metrics.jsonl")[0]["train/loss"]
    assert plain_loss != rows[0][0]["train/loss"]  # the augmentation did change the training batches
    saved = load_training_config(tmp_path / "exp" / "crashed" / "config.toml")
    assert saved["train_dataset"].args["augmentation"] == config["train_dataset"].args["augmentation"]
