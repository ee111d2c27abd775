"""ONNX export: tiny WavLM-Conformer (plain, pruned and frozen) and Fbank-Conformer against torch, the failed
check, int8, the metadata, and ``diarize -c model.onnx`` against the torch model."""

from pathlib import Path

import numpy as np
import pyannote.audio
import pytest
import torch

pytest.importorskip("onnxruntime", reason="ONNX export needs the [export] extra (pip install -e '.[export]')")

from diarizen_lab.cli import main  # noqa: E402
from diarizen_lab.data.rttm import read_rttm  # noqa: E402
from diarizen_lab.data.task import Task  # noqa: E402
from diarizen_lab.errors import DiarizenLabError, InputError  # noqa: E402
from diarizen_lab.export.onnx import OnnxSegmentationModel, export_onnx, read_metadata  # noqa: E402
from diarizen_lab.models.fbank_conformer import FbankConformer  # noqa: E402
from diarizen_lab.models import load_model  # noqa: E402
from diarizen_lab.models.io import save_model  # noqa: E402
from diarizen_lab.models.wavlm_conformer import WavLMConformer  # noqa: E402
from diarizen_lab.pruning import PruningStudent, prune_student  # noqa: E402

SAMPLE = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
CONFORMER = dict(task=Task(chunk_size=5.0), attention_in=32, ffn_hidden=64, num_layers=1)


def tiny_wavlm_conformer(**kwargs) -> WavLMConformer:
    torch.manual_seed(0)
    return WavLMConformer(wavlm="random:wavlm_tiny", **CONFORMER, **kwargs).eval()


def pruned_wavlm_conformer() -> WavLMConformer:
    """A WavLM-Conformer on a physically pruned tiny WavLM that lost heads (not only the last ones), feed-forward
    units and conv channels, with frozen WavLM weights."""
    torch.manual_seed(3)
    student = PruningStudent("random:wavlm_tiny", distill_layers=[0, 1, 2])
    with torch.no_grad():
        for gate in student.gates.values():
            gate.log_alpha.normal_(1.0, 2.5)
    pruned = prune_student(student.eval())
    assert pruned.config.head_indices is not None and sum(pruned.config.num_heads) < 8
    model = WavLMConformer(wavlm=pruned.config.to_dict(), freeze_wavlm=True, **CONFORMER)
    model.wavlm.load_state_dict(pruned.state_dict())
    return model.eval()


def tiny_fbank_conformer() -> FbankConformer:
    torch.manual_seed(0)
    return FbankConformer(**CONFORMER).eval()


MODELS = {"wavlm": tiny_wavlm_conformer, "pruned_frozen_wavlm": pruned_wavlm_conformer, "fbank": tiny_fbank_conformer}


@pytest.fixture(scope="module", params=MODELS.keys())
def exported(request, tmp_path_factory):
    model = MODELS[request.param]()
    path = tmp_path_factory.mktemp(request.param) / "model.onnx"
    return model, export_onnx(model, path)


def test_onnxruntime_matches_torch_on_unseen_batches_and_lengths(exported):
    model, report = exported
    assert report.max_difference <= 1e-4
    assert any(shape[0] > 1 for shape in report.check_shapes)
    onnx_model = OnnxSegmentationModel(report.path)
    for batch, length in [(4, 31_234), (1, 16_000 * 7 + 1)]:  # neither the traced nor the checked shapes
        waveforms = 0.1 * torch.randn(batch, 1, length, generator=torch.Generator().manual_seed(length))
        with torch.inference_mode():
            expected = model(waveforms)
        actual = onnx_model(waveforms)
        assert actual.shape == expected.shape == (batch, model.num_frames(length), 11)
        assert torch.allclose(actual, expected, atol=1e-4, rtol=0)


def test_metadata_rebuilds_the_pyannote_model_interface(exported):
    model, report = exported
    onnx_model = OnnxSegmentationModel(report.path)
    assert read_metadata(report.path)["architecture"] == model.architecture() == onnx_model.architecture()
    assert onnx_model.task == model.task == Task(chunk_size=5.0)
    assert onnx_model.specifications == model.specifications
    assert onnx_model.audio.sample_rate == 16000
    for attribute in ("start", "duration", "step"):
        assert getattr(onnx_model.receptive_field, attribute) == getattr(model.receptive_field, attribute)
    for num_samples in (400, 80_000, 80_123):
        assert onnx_model.num_frames(num_samples) == model.num_frames(num_samples)


def test_int8_is_written_and_reports_its_difference(tmp_path):
    model = tiny_wavlm_conformer()
    report = export_onnx(model, tmp_path / "model.onnx", int8=True)
    assert report.int8_path == tmp_path / "model.int8.onnx"
    assert report.int8_path.stat().st_size < report.path.stat().st_size  # tiny model: convolutions dominate
    assert 1e-4 < report.int8_max_difference < 1.0  # quantization changes the output, and not beyond recognition
    assert read_metadata(report.int8_path) == read_metadata(report.path)
    assert OnnxSegmentationModel(report.int8_path).specifications == model.specifications


def test_failed_check_writes_nothing(tmp_path):
    path = tmp_path / "model.onnx"
    with pytest.raises(DiarizenLabError, match=r"differ from torch's by .* \(tolerance 0\); nothing written"):
        export_onnx(tiny_fbank_conformer(), path, tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_an_export_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not onnx")
    with pytest.raises(InputError, match="cannot read ONNX file"):
        load_model(path)


@pytest.mark.slow
def test_export_cli_then_diarize_with_the_onnx_file_gives_the_torch_rttm(tmp_path, capsys):
    checkpoint = save_model(tmp_path / "model.pt", tiny_wavlm_conformer())
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "-c", str(checkpoint), "-o", str(onnx_path), "--tolerance", "0"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("diarizen-lab: error: ") and error.count("\n") == 1 and "nothing written" in error
    assert not onnx_path.exists()
    assert main(["export", "-c", str(checkpoint), "-o", str(onnx_path)]) == 0
    assert "max |log-prob difference|" in capsys.readouterr().out
    turns = {}
    for name, model_file in (("torch", checkpoint), ("onnx", onnx_path)):
        out = tmp_path / name
        args = ["diarize", "-c", str(model_file), "-i", str(SAMPLE), "-o", str(out),
                "--set", 'diarization.embedding="fbank-stats"']
        assert main(args) == 0
        turns[name] = [(t.start, t.end, t.speaker) for t in read_rttm(out / "sample.rttm")]
    assert turns["torch"], "a 30 s file with speech must produce turns"
    assert turns["onnx"] == turns["torch"]
    assert isinstance(load_model(onnx_path), OnnxSegmentationModel)
    assert np.isfinite(read_metadata(onnx_path)["frames"]["receptive_field_step"])
