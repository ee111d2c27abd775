"""Physical pruning: size formulas, equivalence with the gated student, the pruned file in use, the CLI."""

import json

import pytest
import torch

from diarizen_lab.cli import main
from diarizen_lab.config import resolve_reference
from diarizen_lab.data.task import Task
from diarizen_lab.models.io import save_model
from diarizen_lab.models.wavlm import WavLM, WavLMConfig, get_preset, load_wavlm
from diarizen_lab.models.wavlm_conformer import WavLMConformer
from diarizen_lab.pruning import PruningStudent, full_keep, mac_counts, param_counts, prune_student
from diarizen_lab.pruning.apply import max_hidden_state_difference
from diarizen_lab.store.wavlm_formats import save_wavlm

S80_CHANNELS = [90, 161, 173, 181, 351, 155, 137]
S80_BASE_PLUS = dict(
    conv_layers=[(c, k, s) for c, (_, k, s) in zip(S80_CHANNELS, get_preset("wavlm_base").conv_layers)],
    num_heads=[2, 3, 3, 5, 2, 1, 4, 4, 0, 0, 2, 1],
    ffn_dims=[666, 660, 649, 1080, 237, 299, 437, 573, 53, 80, 211, 334],
)


def total(counts: dict[str, torch.Tensor]) -> float:
    return float(sum(counts.values()))


def random_student(preset: str, seed: int, **kwargs) -> PruningStudent:
    """A student whose gates keep a random part of every unit type (log_alpha ~ N(1, 2.5))."""
    torch.manual_seed(seed)
    student = PruningStudent(f"random:{preset}", distill_layers=[0, 1, 2], **kwargs)
    with torch.no_grad():
        for gate in student.gates.values():
            gate.log_alpha.normal_(1.0, 2.5)
    return student.eval()


CONFIGS = {name: get_preset(f"wavlm_{name}") for name in ("base_plus", "large", "tiny_large")}
CONFIGS["s80"] = WavLMConfig(**S80_BASE_PLUS)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_parameter_formula_counts_real_models(config):
    with torch.device("meta"):
        real = sum(p.numel() for p in WavLM(config).parameters())
    assert total(param_counts(config, full_keep(config))) == real


def test_published_sizes_of_base_plus_and_s80():
    base, s80 = get_preset("wavlm_base_plus"), WavLMConfig(**S80_BASE_PLUS)
    assert total(param_counts(base, full_keep(base))) == pytest.approx(94.4e6, rel=1e-3)
    assert total(param_counts(s80, full_keep(s80))) == pytest.approx(18.9e6, rel=2e-3)
    assert total(mac_counts(base, full_keep(base))) == pytest.approx(6.9e9, rel=5e-3)
    assert total(mac_counts(s80, full_keep(s80))) == pytest.approx(1.13e9, rel=5e-3)


@pytest.mark.parametrize("preset", ["wavlm_tiny", "wavlm_tiny_large"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expected_size_of_deterministic_masks_is_the_pruned_size(preset, seed):
    student = random_student(preset, seed)
    pruned = prune_student(student)
    keep = student.deterministic_keep()
    assert total(param_counts(student.wavlm.config, keep)) == sum(p.numel() for p in pruned.parameters())
    pruned_keep = full_keep(pruned.config)
    for seconds in (1.0, 8.0):
        assert total(mac_counts(student.wavlm.config, keep, seconds)) == pytest.approx(
            total(mac_counts(pruned.config, pruned_keep, seconds)), rel=1e-12
        )
    # the random gates really prune something of every kind
    assert pruned.config.conv_layers != student.wavlm.config.conv_layers
    assert sum(pruned.config.num_heads) < sum(student.wavlm.config.num_heads)
    assert sum(pruned.config.ffn_dims) < sum(student.wavlm.config.ffn_dims)


@pytest.mark.parametrize("preset", ["wavlm_tiny", "wavlm_tiny_large"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pruned_model_reproduces_the_gated_student(preset, seed):
    student = random_student(preset, seed)
    pruned = prune_student(student)
    waveforms = torch.randn(2, 12_345, generator=torch.Generator().manual_seed(seed))
    assert max_hidden_state_difference(student, pruned, waveforms) < 1e-4


def test_heads_keep_their_relative_position_columns_when_layer_0_attention_is_pruned():
    student = random_student("wavlm_tiny", 3)
    with torch.no_grad():
        student.gates["attlayer_0"].log_alpha.fill_(-10.0)  # layer 0 loses its attention
        student.gates["attlayer_1"].log_alpha.fill_(10.0)
        student.gates["head_1"].log_alpha.copy_(torch.tensor([-10.0, 10.0, -10.0, 10.0]))
    pruned = prune_student(student)
    assert pruned.config.num_heads[0] == 0 and pruned.encoder.layers[0].attention is None
    assert pruned.config.head_indices[1] == [1, 3]
    assert pruned.encoder.rel_attn_embed.embedding.weight.shape == (320, 4)
    waveforms = torch.randn(1, 16_000, generator=torch.Generator().manual_seed(0))
    assert max_hidden_state_difference(student, pruned, waveforms) < 1e-4


def test_a_sublayer_with_every_unit_off_adds_nothing_even_when_its_layer_gate_is_on():
    student = random_student("wavlm_tiny", 5)
    with torch.no_grad():
        student.gates["attlayer_1"].log_alpha.fill_(10.0)
        student.gates["head_1"].log_alpha.fill_(-10.0)
        student.gates["ffnlayer_0"].log_alpha.fill_(10.0)
        student.gates["interm_0"].log_alpha.fill_(-10.0)
    pruned = prune_student(student)
    assert pruned.config.num_heads[1] == 0 and pruned.config.ffn_dims[0] == 0
    assert total(param_counts(student.wavlm.config, student.deterministic_keep())) == sum(
        p.numel() for p in pruned.parameters()
    )
    waveforms = torch.randn(1, 16_000, generator=torch.Generator().manual_seed(0))
    assert max_hidden_state_difference(student, pruned, waveforms) < 1e-4


def test_plain_layer_norms_make_pruning_inexact():
    """Measures what mask-aware norms buy: without them, removing channels changes every layer norm over
    channels (the feature projection's, and each conv block's in a layer-norm extractor)."""
    waveforms = torch.randn(2, 16_000, generator=torch.Generator().manual_seed(0))
    for preset in ("wavlm_tiny", "wavlm_tiny_large"):
        student = random_student(preset, 0, mask_aware_norms=False)
        assert max_hidden_state_difference(student, prune_student(student), waveforms) > 0.1


def test_pruned_file_loads_through_the_store_into_wavlm_conformer_and_trains(tmp_path, monkeypatch):
    pruned = prune_student(random_student("wavlm_tiny", 0))
    store = tmp_path / "checkpoints"
    store.mkdir()
    save_wavlm(store / "pruned.pt", pruned)
    (store / "manifest.toml").write_text('[assets.wavlm-pruned-tiny]\npath = "pruned.pt"\n')
    monkeypatch.setenv("DIARIZEN_LAB_CHECKPOINTS", str(store))

    torch.manual_seed(0)
    model = WavLMConformer(
        wavlm_checkpoint=resolve_reference("wavlm-pruned-tiny", tmp_path), attention_in=32, ffn_hidden=64,
        num_heads=2, num_layers=1, task=Task(chunk_size=2.0, max_speakers_per_chunk=2, max_speakers_per_frame=2),
    )
    assert model.wavlm.config == pruned.config
    for key, value in pruned.state_dict().items():
        assert torch.equal(model.wavlm.state_dict()[key], value)
    assert model.architecture()["args"]["wavlm"] == pruned.config.to_dict()

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    waveforms = torch.randn(2, 1, 32_000, generator=torch.Generator().manual_seed(1))
    log_probs = model(waveforms)
    assert log_probs.shape == (2, model.num_frames(32_000), 4)
    before = [p.detach().clone() for p in model.wavlm.parameters()]
    (-log_probs[..., 0].mean()).backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.wavlm.parameters()))


def test_cli_extract_then_apply(tmp_path, capsys):
    torch.manual_seed(0)
    diarization = WavLMConformer(
        wavlm="random:wavlm_tiny", task=Task(chunk_size=2.0), attention_in=32, ffn_hidden=64, num_heads=2,
        num_layers=1
    )
    save_model(tmp_path / "model.pt", diarization)
    assert main(["prune", "extract", "-c", str(tmp_path / "model.pt"), "-o", str(tmp_path / "teacher.pt")]) == 0
    teacher = load_wavlm(tmp_path / "teacher.pt")
    for key, value in diarization.wavlm.state_dict().items():
        assert torch.equal(teacher.state_dict()[key], value)

    student = random_student("wavlm_tiny", 4)
    student.load_state_dict({**student.state_dict(), **{f"wavlm.{k}": v for k, v in teacher.state_dict().items()}})
    save_model(tmp_path / "student.pt", student)
    assert main(["prune", "apply", "-c", str(tmp_path / "student.pt"), "-o", str(tmp_path / "pruned.pt")]) == 0
    report = json.loads((tmp_path / "pruned.json").read_text())
    pruned = load_wavlm(tmp_path / "pruned.pt")
    params = sum(p.numel() for p in pruned.parameters())
    assert report["after"]["params"]["total"] == params
    assert report["before"]["params"]["total"] == sum(p.numel() for p in teacher.parameters())
    assert report["sparsity"] == pytest.approx(1 - params / report["before"]["params"]["total"])
    assert report["max_hidden_state_difference"] < 1e-4
    assert report["architecture_after"]["num_heads"] == pruned.config.num_heads
    assert "sparsity" in capsys.readouterr().out

    # a diarization model is not a student, and a student is not a diarization model
    assert main(["prune", "apply", "-c", str(tmp_path / "model.pt"), "-o", str(tmp_path / "x.pt")]) == 2
    assert main(["prune", "extract", "-c", str(tmp_path / "student.pt"), "-o", str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()
    assert "PruningStudent" in capsys.readouterr().err
