"""Every malformed input of ``tests/bad_inputs/`` through the command that reads it (see its README).

Each case runs the real entry point (``diarizen_lab.cli.main``; a few also as a subprocess) and checks the exit
status, a one-line message naming the file (and line) and saying what is wrong, no traceback, and no output
left behind. Binary fixtures (audio, checkpoints, a broken cache symlink) are made here from the tables below;
the text fixtures are the files of the corpus, copied to a temporary folder so that nothing is written into the
repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from diarizen_lab.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"
ERROR_PREFIX = "diarizen-lab: error: "
COMMIT = "0123456789abcdef0123456789abcdef01234567"
"""Snapshot of the Hugging Face cache tree whose symlink is broken."""


@dataclass(frozen=True)
class Audio:
    """A test signal: noise bursts over a tone, written with soundfile."""

    seconds: float = 6.0
    sample_rate: int = 16000
    channels: int = 1
    subtype: str = "PCM_16"
    gain: float = 0.3
    nan_at: float | None = None
    """Put a NaN sample at this time (needs a float subtype)."""

    def write(self, path: Path) -> None:
        rng = np.random.default_rng(0)
        n = round(self.seconds * self.sample_rate)
        t = np.arange(n) / self.sample_rate
        bursts = (np.sin(2 * np.pi * 0.5 * t) > 0).astype(np.float32)
        mono = self.gain * (0.5 * np.sin(2 * np.pi * 220 * t) + bursts * rng.standard_normal(n)).astype(np.float32)
        if self.gain > 1:
            mono = np.clip(mono, -1.0, 1.0)
        samples = np.repeat(mono[:, None], self.channels, axis=1)
        if self.nan_at is not None:
            samples[round(self.nan_at * self.sample_rate), 0] = np.nan
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, samples, self.sample_rate, subtype=self.subtype)


#: Binary fixtures made at run time, by path in the corpus copy.
AUDIO = {
    "datadirs/unknown_recording/meeting1.wav": Audio(),
    "datadirs/uem_missing_recording/meeting1.wav": Audio(),
    "datadirs/uem_past_audio/meeting1.wav": Audio(),
    "datadirs/missing_rttm/meeting1.wav": Audio(),
    "datadirs/wrong_sample_rate/meeting1.wav": Audio(sample_rate=8000),
    "datadirs/zero_length_audio/meeting1.wav": Audio(seconds=0),
    "datadirs/eight_channels/meeting1.wav": Audio(channels=8),
    "audio/nan_samples.wav": Audio(subtype="FLOAT", nan_at=2.5),
    "audio/clipped.wav": Audio(gain=4.0),
    "audio/eight_channels.wav": Audio(channels=8),
    "audio/8khz.wav": Audio(sample_rate=8000),
    "audio/zero_length.wav": Audio(seconds=0),
}
NOT_AUDIO = {
    "datadirs/unreadable_audio/meeting1.wav": b"RIFF this text only pretends to be a WAV file\n",
    "audio/not_audio.wav": b"RIFF this text only pretends to be a WAV file\n",
}
FOLDERS = ["datadirs/audio_is_directory/audio_folder"]


def tiny_model():
    from diarizen_lab.data.task import Task
    from diarizen_lab.models.wavlm_conformer import WavLMConformer

    torch.manual_seed(0)
    return WavLMConformer(wavlm="random:wavlm_tiny", task=Task(chunk_size=2.0), attention_in=16, ffn_hidden=32,
                          num_layers=1)


def make_checkpoints(folder: Path) -> None:
    """Broken model checkpoints, a WavLM file whose manifest digest is wrong, a cache with a broken symlink."""
    from diarizen_lab.models.io import save_model
    from diarizen_lab.store.wavlm_formats import save_wavlm

    model = tiny_model()
    good = save_model(folder / "checkpoints" / "good.pt", model)
    data = good.read_bytes()
    (folder / "checkpoints" / "zero_byte.pt").write_bytes(b"")
    (folder / "checkpoints" / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "checkpoints" / "not_torch.pt").write_text("model weights would be here\n")
    torch.save(model.state_dict(), folder / "checkpoints" / "state_dict_only.pt")
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["state_dict"].pop(next(iter(checkpoint["state_dict"])))
    torch.save(checkpoint, folder / "checkpoints" / "missing_keys.pt")
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["model"]["path"] = "diarizen_lab.models.wavlm_conformr.WavLMConformer"
    torch.save(checkpoint, folder / "checkpoints" / "unknown_model_path.pt")
    wavlm = folder / "store" / "sha_mismatch" / "tiny_wavlm.pt"
    save_wavlm(wavlm, model.wavlm)
    (folder / "checkpoints" / "truncated_wavlm.pt").write_bytes(wavlm.read_bytes()[:4096])
    # a Hugging Face cache tree whose snapshot links to a blob that was never copied
    repo = folder / "store" / "hf_cache" / "models--microsoft--wavlm-base-plus"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir()
    (repo / "blobs" / ("c" * 40)).write_text('{"model_type": "wavlm"}')
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to(Path("../../blobs") / ("c" * 40))
    (snapshot / "pytorch_model.bin").symlink_to(Path("../../blobs") / ("d" * 64))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A copy of ``tests/bad_inputs`` with the binary fixtures added."""
    folder = tmp_path_factory.mktemp("bad_inputs") / "corpus"
    shutil.copytree(CORPUS, folder)
    for relative, audio in AUDIO.items():
        audio.write(folder / relative)
    for relative, data in NOT_AUDIO.items():
        (folder / relative).write_bytes(data)
    for relative in FOLDERS:
        (folder / relative).mkdir(parents=True)
    make_checkpoints(folder)
    return folder


@dataclass(frozen=True)
class Case:
    """One rejected input: the command line (``{c}``: the corpus copy, ``{out}``: an output path that must not
    exist afterwards), the text the message must hold, the corpus path (``path[:line]``) it must name, and the
    exit status (2: one-line error; 1: a report with one line per problem)."""

    id: str
    argv: str
    message: str
    where: str
    code: int = 2


SCORE = "score -r {c}/rttm/reference.rttm -s "
CHECK = "data check {c}/datadirs/"
MODEL = "{c}/checkpoints/good.pt"
DIARIZE = f"diarize -c {MODEL} -o {{out}} --set diarization.embedding=fbank-stats -i "
TRAIN = "train -C {c}/toml/"

ERROR_CASES = [
    # RTTM
    Case("rttm-field-count", SCORE + "{c}/rttm/wrong_field_count.rttm", "expected 10 fields, got 8",
         "rttm/wrong_field_count.rttm:2"),
    Case("rttm-negative-duration", SCORE + "{c}/rttm/negative_duration.rttm", "negative duration -1.200",
         "rttm/negative_duration.rttm:3"),
    Case("rttm-non-numeric-time", "score -s {c}/rttm/reference.rttm -r {c}/rttm/non_numeric_time.rttm",
         "start time '0:00:01' is not a number", "rttm/non_numeric_time.rttm:1"),
    Case("rttm-nan-duration", SCORE + "{c}/rttm/nan_duration.rttm", "duration 'nan' is not a finite number",
         "rttm/nan_duration.rttm:2"),
    Case("rttm-unknown-line-type", SCORE + "{c}/rttm/unknown_line_type.rttm", "unknown RTTM line type 'SPEECH'",
         "rttm/unknown_line_type.rttm:3"),
    Case("rttm-missing-speaker", SCORE + "{c}/rttm/missing_speaker_name.rttm", "the speaker name is <NA>",
         "rttm/missing_speaker_name.rttm:1"),
    Case("rttm-not-utf8", SCORE + "{c}/rttm/latin1_encoding.rttm", "not UTF-8", "rttm/latin1_encoding.rttm:2"),
    Case("rttm-is-a-directory", "score -r {c}/rttm -s {c}/rttm/reference.rttm", "rttm: is a directory", "rttm"),
    Case("rttm-missing-file", SCORE + "{c}/rttm/nowhere.rttm", "no such hypothesis file", "rttm/nowhere.rttm"),
    Case("rttm-unknown-recording", CHECK + "unknown_recording", "recording 'meeting9' is not in wav.scp",
         "datadirs/unknown_recording/rttm:3", code=1),
    # UEM
    Case("uem-end-before-start", SCORE + "{c}/rttm/reference.rttm -u {c}/uem/end_before_start.uem",
         "end 1.500 is not after start 4.000", "uem/end_before_start.uem:1"),
    Case("uem-field-count", SCORE + "{c}/rttm/reference.rttm -u {c}/uem/wrong_field_count.uem",
         "expected 4 fields", "uem/wrong_field_count.uem:1"),
    Case("uem-overlapping-spans", SCORE + "{c}/rttm/reference.rttm -u {c}/uem/overlapping_spans.uem",
         "overlaps the span on line 1", "uem/overlapping_spans.uem:2"),
    Case("uem-non-numeric-time", SCORE + "{c}/rttm/reference.rttm -u {c}/uem/non_numeric_time.uem",
         "start time 'start' is not a number", "uem/non_numeric_time.uem:1"),
    Case("uem-missing-recording", CHECK + "uem_missing_recording", "recording 'other_meeting' is not in wav.scp",
         "datadirs/uem_missing_recording/uem", code=1),
    Case("uem-past-audio", CHECK + "uem_past_audio", "ends at 60.000 s, after its audio (6.000 s)",
         "datadirs/uem_past_audio/uem", code=1),
    # wav.scp and the audio it lists
    Case("scp-missing-file", CHECK + "missing_audio", "no file", "datadirs/missing_audio/wav.scp", code=1),
    Case("scp-directory", CHECK + "audio_is_directory", "no file", "datadirs/audio_is_directory/wav.scp",
         code=1),
    Case("scp-unreadable-audio", CHECK + "unreadable_audio", "cannot open",
         "datadirs/unreadable_audio/wav.scp", code=1),
    Case("scp-wrong-sample-rate", CHECK + "wrong_sample_rate", "is at 8000 Hz, not 16000 Hz",
         "datadirs/wrong_sample_rate/wav.scp", code=1),
    Case("scp-zero-length-audio", CHECK + "zero_length_audio", "holds no audio",
         "datadirs/zero_length_audio/wav.scp", code=1),
    Case("scp-missing-channel", CHECK + "eight_channels --channel 8", "has 8 channels, no channel 8",
         "datadirs/eight_channels/wav.scp", code=1),
    Case("datadir-without-rttm", CHECK + "missing_rttm", "missing rttm", "datadirs/missing_rttm", code=1),
    Case("scp-one-field", DIARIZE + "{c}/scp/one_field.scp", "expected '<recording> <path>', got one field",
         "scp/one_field.scp:2"),
    Case("scp-piped-command", DIARIZE + "{c}/scp/piped_command.scp", "piped commands are not supported",
         "scp/piped_command.scp:1"),
    Case("scp-duplicate-recording", DIARIZE + "{c}/scp/duplicate_recording.scp",
         "recording 'meeting1' is already listed on line 1", "scp/duplicate_recording.scp:2"),
    Case("scp-missing-file-diarize", DIARIZE + "{c}/scp/missing_file.scp", "no audio file",
         "scp/missing_file.scp"),
    # TOML
    Case("toml-syntax-error", TRAIN + "syntax_error.toml", "TOML syntax error", "toml/syntax_error.toml:3"),
    Case("toml-unknown-key", TRAIN + "unknown_key.toml", "unknown key 'max_epoch' (did you mean 'max_epochs'?)",
         "toml/unknown_key.toml:32"),
    Case("toml-wrong-type", TRAIN + "wrong_type.toml", "'batch_size' must be int, got str '8'",
         "toml/wrong_type.toml:29"),
    Case("toml-unknown-path", TRAIN + "unknown_path.toml", "unknown path", "toml/unknown_path.toml:11"),
    Case("toml-unknown-argument", TRAIN + "unknown_model_argument.toml", "unknown key 'num_layer'",
         "toml/unknown_model_argument.toml:14"),
    Case("toml-invalid-value", TRAIN + "invalid_value.toml", "max_epochs must be >= 1",
         "toml/invalid_value.toml:32"),
    Case("toml-missing-key", TRAIN + "missing_required_key.toml", "missing required key(s): 'name'",
         "toml/missing_required_key.toml:2"),
    Case("toml-unknown-section", TRAIN + "unknown_section.toml", "[optimiser] unknown section",
         "toml/unknown_section.toml:34"),
    Case("toml-missing-data-dir", TRAIN + "missing_data_dir.toml", "not a directory", "toml/data/train"),
    Case("toml-diarization-value", f"diarize -c {MODEL} -i {{c}}/audio/clipped.wav -o {{out}} "
         "--config {c}/toml/diarization_invalid_value.toml", "step_ratio must be in (0, 1]",
         "toml/diarization_invalid_value.toml:4"),
    Case("toml-diarization-key", f"diarize -c {MODEL} -i {{c}}/audio/clipped.wav -o {{out}} "
         "--config {c}/toml/diarization_unknown_key.toml", "unknown key 'clusterin'",
         "toml/diarization_unknown_key.toml:4"),
    Case("toml-missing-file", TRAIN + "nowhere.toml", "config file not found", "toml/nowhere.toml"),
    # checkpoints
    Case("checkpoint-zero-byte", DIARIZE + "{c}/audio/clipped.wav -c {c}/checkpoints/zero_byte.pt",
         "cannot read model checkpoint", "checkpoints/zero_byte.pt"),
    Case("checkpoint-truncated", DIARIZE + "{c}/audio/clipped.wav -c {c}/checkpoints/truncated.pt",
         "cannot read model checkpoint", "checkpoints/truncated.pt"),
    Case("checkpoint-not-torch", DIARIZE + "{c}/audio/clipped.wav -c {c}/checkpoints/not_torch.pt",
         "cannot read model checkpoint", "checkpoints/not_torch.pt"),
    Case("checkpoint-wrong-format", DIARIZE + "{c}/audio/clipped.wav -c {c}/checkpoints/state_dict_only.pt",
         "not a diarizen_lab.model/1 checkpoint", "checkpoints/state_dict_only.pt"),
    Case("checkpoint-missing-keys", DIARIZE + "{c}/audio/clipped.wav -c {c}/checkpoints/missing_keys.pt",
         "state dict does not match", "checkpoints/missing_keys.pt"),
    Case("checkpoint-unknown-model", DIARIZE + "{c}/audio/clipped.wav -c {c}/checkpoints/unknown_model_path.pt",
         "cannot build model", "checkpoints/unknown_model_path.pt"),
    Case("checkpoint-missing", DIARIZE + "{c}/audio/clipped.wav -c {c}/checkpoints/nowhere.pt",
         "no such model file or directory", "checkpoints/nowhere.pt"),
    Case("checkpoint-convert-zero-byte", "checkpoints convert {c}/checkpoints/zero_byte.pt {out}",
         "checkpoint file is empty (0 bytes)",
         "checkpoints/zero_byte.pt"),
    Case("checkpoint-convert-truncated", "checkpoints convert {c}/checkpoints/truncated_wavlm.pt {out}",
         "the file is corrupt or truncated",
         "checkpoints/truncated_wavlm.pt"),
    Case("checkpoint-sha-mismatch", "checkpoints verify {c}/store/sha_mismatch",
         f"expected {'0' * 64}", "store/sha_mismatch/tiny_wavlm.pt", code=1),
    Case("checkpoint-broken-symlink", "checkpoints verify {c}/store/hf_cache", "points to missing blobs/dddd",
         f"store/hf_cache/models--microsoft--wavlm-base-plus/snapshots/{COMMIT}/pytorch_model.bin", code=1),
    Case("checkpoint-bad-manifest", "checkpoints verify {c}/store/bad_manifest", "sha256 must be 64 hex digits",
         "store/bad_manifest/manifest.toml:4"),
    # audio given to diarize
    Case("audio-nan-samples", DIARIZE + "{c}/audio/nan_samples.wav", "NaN", "audio/nan_samples.wav"),
    Case("audio-zero-length", DIARIZE + "{c}/audio/zero_length.wav", "holds no samples", "audio/zero_length.wav"),
    Case("audio-unreadable", DIARIZE + "{c}/audio/not_audio.wav", "cannot read audio", "audio/not_audio.wav"),
    Case("audio-missing-channel", DIARIZE + "{c}/audio/eight_channels.wav --set diarization.channel=8",
         "channel 8 requested but the file has 8 channel(s)", "audio/eight_channels.wav"),
    Case("output-is-a-file", f"diarize -c {MODEL} -i {{c}}/audio/clipped.wav -o {{c}}/rttm/reference.rttm",
         "exists and is not a directory", "rttm/reference.rttm"),
    # experiment directories given to `average`
    Case("metrics-malformed-line", "average -e {c}/experiments/malformed_metrics -n 1 -o {out}",
         "not a JSON object", "experiments/malformed_metrics/metrics.jsonl:2"),
    Case("metrics-epochs-without-checkpoint", "average -e {c}/experiments/missing_checkpoints -n 2 -o {out}",
         "no checkpoint for selected epoch(s) 1, 2", "experiments/missing_checkpoints/checkpoints"),
]


def expand(text: str, corpus: Path, out: Path) -> list[str]:
    return text.format(c=corpus, out=out).split()


def located(message: str, where: str, corpus: Path, report: str = "") -> bool:
    """Whether ``message`` names the corpus path ``where``; in a report, a file may be named relative to the
    folder named in the report's header (``checkpoints verify``)."""
    path = corpus / where
    return str(path) in message or (path.name in message.split(":")[0] and str(path.parent) in report)


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda case: case.id)
def test_bad_input_fails_with_one_line(case, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(expand(case.argv, corpus, out))
    captured = capsys.readouterr()
    assert code == case.code, captured
    assert "Traceback" not in captured.err
    if code == 2:  # a DiarizenLabError: exactly one line on stderr
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), captured.err
        message = lines[0]
    else:  # a report: the problem is one of its lines
        found = [line for line in captured.out.splitlines() if case.message in line]
        assert found, captured.out
        message = found[0]
    assert case.message in message
    assert located(message, case.where, corpus, captured.out), message
    assert not out.exists()
    assert not (corpus / "toml" / "exp").exists()  # the experiment folder of the TOML files
    assert not list(tmp_path.glob(".*.tmp"))


@dataclass(frozen=True)
class Graceful:
    """A questionable input that is accepted: exit status 0, the RTTMs ``outputs`` written (under ``{out}``),
    and ``warning`` logged when given."""

    id: str
    argv: str
    warning: str | None = None
    outputs: tuple[str, ...] = ()


GRACEFUL_CASES = [
    Graceful("audio-clipped", DIARIZE + "{c}/audio/clipped.wav",
             "of the samples are at full scale (clipped audio)", ("clipped.rttm",)),
    Graceful("audio-eight-channels-downmixed", DIARIZE + "{c}/audio/eight_channels.wav",
             outputs=("eight_channels.rttm",)),
    Graceful("audio-8khz-resampled", DIARIZE + "{c}/audio/8khz.wav", outputs=("8khz.rttm",)),
    Graceful("uem-without-the-recording", SCORE + "{c}/rttm/reference.rttm -u {c}/uem/missing_recording.uem",
             "meeting1 has no UEM entry: scoring it from its first to its last reference turn"),
    Graceful("datadir-eight-channels-reads-channel-0", CHECK + "eight_channels"),
]


@pytest.mark.parametrize("case", GRACEFUL_CASES, ids=lambda case: case.id)
def test_questionable_input_is_accepted_as_documented(case, corpus, tmp_path, capsys, caplog):
    from diarizen_lab.data.rttm import read_rttm

    out = tmp_path / "out"
    code = main(expand(case.argv, corpus, out))
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "Traceback" not in captured.err
    if case.warning:
        assert [r.getMessage() for r in caplog.records if case.warning in r.getMessage()], caplog.text
    for name in case.outputs:
        turns = read_rttm(out / name)
        assert all(turn.recording == Path(name).stem for turn in turns)
        assert max((turn.end for turn in turns), default=0.0) <= 6.0 + 1e-3  # never past the 6 s of audio
    written = sorted(path.name for path in out.iterdir()) if out.exists() else []
    assert written == sorted(case.outputs)


def test_a_bad_recording_stops_diarize_and_keeps_only_finished_rttms(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(expand(DIARIZE + "{c}/scp/second_recording_bad.scp", corpus, out))
    assert code == 2
    err = capsys.readouterr().err  # the progress bar, then the error
    assert [line for line in err.splitlines() if line.startswith("diarizen-lab")] == [err.splitlines()[-1]] == [
        f"{ERROR_PREFIX}{corpus}/scp/../audio/nan_samples.wav: sample at 2.500 s is NaN or infinite "
        "(re-export the audio: a file with NaN or infinite samples cannot be diarized)"
    ]
    assert sorted(path.name for path in out.iterdir()) == ["meeting1.rttm"]  # complete; no temporary file
    code = main(expand(DIARIZE + "{c}/scp/second_recording_bad.scp --skip-existing", corpus, out))
    assert code == 2 and sorted(path.name for path in out.iterdir()) == ["meeting1.rttm"]


def test_broken_symlink_in_cache_is_named_with_its_fix(corpus, capsys):
    assert main(["checkpoints", "verify", str(corpus / "store" / "hf_cache")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.strip().startswith("broken-symlink")] == [
        "  broken-symlink  pytorch_model.bin: points to missing "
        f"blobs/{'d' * 64} (fix: re-copy blob {'d' * 64} into "
        f"{corpus}/store/hf_cache/models--microsoft--wavlm-base-plus/blobs from a machine where it exists "
        "(cp -a or rsync -a keep the snapshot symlinks; do not dereference them with scp -r))"
    ]


#: Through the installed entry point in a fresh interpreter: the message and exit status users see.
SUBPROCESS_CASES = ["rttm-not-utf8", "toml-invalid-value", "audio-nan-samples"]


def test_command_line_prints_one_line_without_traceback(corpus, tmp_path):
    cases = {case.id: case for case in ERROR_CASES}
    runs = {}
    for name in SUBPROCESS_CASES:  # started together: the interpreter start-ups overlap
        out = tmp_path / name
        command = [sys.executable, "-m", "diarizen_lab", *expand(cases[name].argv, corpus, out)]
        runs[name] = (out, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                            env=os.environ))
    for name, (out, process) in runs.items():
        _, stderr = process.communicate(timeout=300)
        case = cases[name]
        assert process.returncode == 2, stderr
        assert len(stderr.splitlines()) == 1 and stderr.startswith(ERROR_PREFIX), stderr
        assert case.message in stderr and located(stderr, case.where, corpus)
        assert not out.exists()
