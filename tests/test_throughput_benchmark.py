"""benchmarks/throughput.py's measuring parts on the CPU: compiled trainers warm up on every batch shape before
the clock starts, and the profile names the operators and reports the step's wall time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from reproductions import registry

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def throughput():
    spec = importlib.util.spec_from_file_location("throughput_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_trainer(throughput, batches: int = 5):
    repro = registry.get("vaswani2017")
    cfg = repro.load_config("tiny")
    vocab = 40
    gen = torch.Generator().manual_seed(0)
    data = []
    for i in range(batches):  # a different shape per batch, as length-bucketed batches have
        tokens = torch.randint(4, vocab, (3 + i, 6 + i), generator=gen)
        data.append({"src": tokens, "tgt_in": tokens[:, :-1], "tgt_out": tokens[:, 1:]})
    torch.manual_seed(0)
    model = repro.build(cfg, vocab, vocab)
    return throughput.Trainer(model, cfg, data, ("src", "tgt_in", "tgt_out"), "32-true", torch.device("cpu"))


def test_a_compiled_trainer_sees_every_batch_before_the_clock_starts(throughput):
    plain, compiled = tiny_trainer(throughput), tiny_trainer(throughput)
    compiled.compiled = True  # what the warm-up does depends on the flag alone; no compiler needed here
    rows = throughput.train_rates([plain, compiled], seconds=0.0, rounds=4, warmup=2)
    # seconds=0: every timed slice runs its one minimum step, so the rest were warm-up steps
    assert plain.steps == 2 + 4
    assert compiled.steps == len(compiled.batches) + 4
    assert [r["steps"] for r in rows] == [4, 4]
    assert all(r["target_tokens_per_s"] > 0 and r["flops_per_target_token"] > 0 for r in rows)


def test_the_profile_names_operators_and_times_the_step(throughput):
    trainer = tiny_trainer(throughput)
    trainer.step()
    profile = throughput.profile_steps(trainer, steps=2, top=5)
    assert profile["steps"] == 2 and profile["wall_ms_per_step"] > 0
    assert profile["device_busy_ms_per_step"] is None and profile["busy_fraction"] is None  # no device here
    assert len(profile["top"]) == 5
    assert any(op["op"].startswith("aten::") for op in profile["top"])
    times = [op["ms_per_step"] for op in profile["top"]]
    assert times == sorted(times, reverse=True) and times[0] > 0
