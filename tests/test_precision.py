"""`train.precision: auto` picks bf16-mixed only where the hardware multiplies bf16 natively."""

import pytest
import torch

from reproductions.common import precision
from reproductions.common.data.vocab import EOS_ID


def _fake(monkeypatch, cuda: bool, cuda_bf16: bool, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: cuda and cuda_bf16)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("cuda, cuda_bf16, avx512_bf16, amx, accelerator, expected", [
    (True, True, False, False, "auto", "bf16-mixed"),  # A100 / H100 class
    (True, False, True, True, "auto", "32-true"),  # V100 / T4: no bf16 tensor cores; the CPU does not train
    (True, True, False, False, "gpu", "bf16-mixed"),
    (True, True, False, False, "cpu", "32-true"),  # a GPU machine told to train on its plain CPU
    (False, False, True, False, "auto", "bf16-mixed"),  # Cooper Lake, Zen 4: AVX512-BF16
    (False, False, False, True, "cpu", "bf16-mixed"),  # Sapphire Rapids: AMX
    (False, False, False, False, "auto", "32-true"),  # bf16 emulated: slower than fp32
    (False, False, False, False, "mps", "32-true"),
])
def test_auto_precision_follows_the_hardware(monkeypatch, cuda, cuda_bf16, avx512_bf16, amx, accelerator, expected):
    _fake(monkeypatch, cuda, cuda_bf16, avx512_bf16, amx)
    assert precision.resolve_precision("auto", accelerator) == expected


def test_an_explicit_precision_is_kept_and_an_unknown_one_is_an_error(monkeypatch):
    _fake(monkeypatch, False, False, True, True)
    assert precision.resolve_precision("32-true") == "32-true"
    assert precision.resolve_precision("16-mixed", "gpu") == "16-mixed"
    with pytest.raises(ValueError, match="train.precision='fp8'"):
        precision.resolve_precision("fp8")


def test_decoding_autocast_runs_matrix_products_in_bf16_only_when_mixed():
    x = torch.randn(4, 8)
    with precision.autocast("bf16-mixed", "cpu"):
        assert (x @ x.t()).dtype == torch.bfloat16
    with precision.autocast("32-true", torch.device("cpu")):
        assert (x @ x.t()).dtype == torch.float32


@pytest.mark.parametrize("name", ["bahdanau2014", "cho2014", "vaswani2017"])
def test_bf16_training_step_is_finite_and_close_to_fp32(name):
    """Loss in fp32 and -inf masks survive autocast: a bf16 step gives a finite loss near the fp32 one."""
    import torch.nn.functional as F

    from reproductions import registry

    torch.manual_seed(0)
    repro = registry.get(name)
    model = repro.build(repro.load_config("tiny", ["model.dropout=0.0"]), 40, 40)
    src, tgt = torch.randint(4, 40, (4, 7)), torch.randint(4, 40, (4, 6))
    src[2, 3:] = 0
    src[2, 2] = EOS_ID  # </s> ends the shorter sentence

    def loss():
        logits, _ = model(src, tgt)
        return F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten())

    reference = loss()
    with precision.autocast("bf16-mixed", "cpu"):
        mixed = loss()
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed)
    assert abs(mixed.item() - reference.item()) < 0.05 * reference.item()
    mixed.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("clip_norm, fused", [(None, True), (1.0, None)])
def test_adam_on_cuda_is_fused_unless_lightning_must_clip_its_gradients(monkeypatch, clip_norm, fused):
    """Lightning's mixed-precision plugin refuses to clip gradients for an optimiser that unscales them itself
    (the fused Adam): seen on an H100 with the RNNencdec gpu preset (bf16-mixed, clip_norm 1.0)."""
    from types import SimpleNamespace

    from reproductions.common import optim
    from reproductions.common.sections import OptimConfig

    made = {}
    monkeypatch.setattr(torch.optim, "Adam", lambda params, **kwargs: made.update(kwargs) or SimpleNamespace())
    optim.configure_optimizers(OptimConfig(clip_norm=clip_norm), [SimpleNamespace(is_cuda=True)])
    assert made["fused"] is fused
    optim.configure_optimizers(OptimConfig(clip_norm=None), [SimpleNamespace(is_cuda=False)])
    assert made["fused"] is None  # never on CPU parameters


@pytest.mark.parametrize("avx512_bf16, threads, bf16_tflops, expected", [
    (True, 2, 1.3, []),  # the targets' own kind of machine: verdicts comparable
    (False, 2, 0.05, ["precision 32-true (targets: bf16-mixed)"]),  # bf16 emulated: fp32, half the steps
    (True, 8, 3.0, ["cpus 8 (targets: 2)"]),
    (True, 2, 0.6, ["bf16 matrix rate 0.6 TFLOP/s (targets: 1.326)"]),  # same kind, much slower (or loaded)
])
def test_a_time_budgeted_benchmark_says_when_its_machine_is_not_the_targets(monkeypatch, avx512_bf16, threads,
                                                                          bf16_tflops, expected):
    from harness import hardware

    _fake(monkeypatch, False, False, avx512_bf16, False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(hardware, "matmul_rates", lambda device, seconds: {
        "fp32": {"n": 1024, "tflops": 0.3}, "bf16": {"n": 1024, "tflops": bf16_tflops}})
    machine = hardware.budget_machine(["train.max_minutes=30"])  # the opt-in wall-clock cap
    assert machine["differs"] == expected and machine["cpu_bf16"] == avx512_bf16
    assert machine["matmul_tflops"] == {"fp32": 0.3, "bf16": bf16_tflops}
    warning = hardware.budget_warning(machine)
    assert (warning is None) == (not expected)
    if expected:
        assert expected[0] in warning and "not comparable" in warning
    if avx512_bf16:  # fp32 asked for on a bf16 machine: the runs make fewer steps than the targets' did
        asked = hardware.budget_machine(["train.max_minutes=30", "train.precision=32-true"])
        assert "precision 32-true (targets: bf16-mixed)" in asked["differs"]
    # the presets end on steps, not minutes: the core count and speed do not matter, the arithmetic still does
    stepped = hardware.budget_machine()
    assert not stepped["time_budgeted"] and machine["time_budgeted"]
    assert not hardware.budget_machine(["train.max_minutes=0", "train.max_steps=7036"])["time_budgeted"]
    assert stepped["differs"] == [d for d in expected if d.startswith("precision")]
    if stepped["differs"]:
        assert "end on steps or epochs" in hardware.budget_warning(stepped)
    else:
        assert hardware.budget_warning(stepped) is None


def test_the_matrix_rates_are_measured_on_this_machine():
    from harness import hardware

    rates = hardware.matmul_rates(torch.device("cpu"), seconds=0.2, rounds=2)
    assert set(rates) == {"fp32", "bf16"} and all(r["n"] == 1024 and r["tflops"] > 0 for r in rates.values())
