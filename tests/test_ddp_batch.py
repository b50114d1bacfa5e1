"""The paper's batch on any number of processes: `train.tokens_per_step` fixes the real target tokens of an
optimiser step, so a 2-process gloo DDP run accumulates half as many batches as 1 process and sees the same
tokens per step; the token cache is built once for the whole job."""

import json

import pytest
from test_cli import attnrepro

pytestmark = pytest.mark.slow

# Accumulation is a whole number of batches per process: with ~260 real target tokens per batch of 300 padded
# tokens, 2100 per step is 8 batches on one process and 4 on each of two.
SETTINGS = ["--set", "data.train_limit=2000", "--set", "data.max_tokens=300", "--set", "train.tokens_per_step=2100",
            "--set", "train.max_epochs=1", "--set", "train.average_last=0"]


def _run(tmp_path, devices: int):
    run_dir, cache = tmp_path / f"devices-{devices}", tmp_path / f"cache-{devices}"
    result = attnrepro("train", "vaswani2017", "--preset", "tiny", "--devices", str(devices), "--no-evaluate",
                       *SETTINGS, "--run-dir", str(run_dir), env={"ATTNREPRO_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())["training"], result.stderr


def test_tokens_per_step_are_the_same_on_one_and_two_processes_and_the_cache_is_built_once(data_root, tmp_path):
    single, _ = _run(tmp_path, 1)
    double, stderr = _run(tmp_path, 2)
    assert stderr.count("attnrepro: tokenised") == 1  # one process built the cache, the other mapped it
    assert stderr.count("effective batch:") == 1  # printed once, by rank 0
    assert double["devices"] == 2
    budget_1, budget_2 = single["batch"], double["batch"]
    assert budget_1["accumulate_grad_batches"] == 2 * budget_2["accumulate_grad_batches"]
    measured = [run["target_tokens"] / run["steps"] for run in (single, double)]
    assert abs(measured[1] - measured[0]) <= 0.1 * measured[0], measured
    assert abs(measured[0] - 2100) <= 0.15 * 2100, measured  # the last step of the epoch may be short
    assert budget_1["measured_tgt_tokens_per_step"] == round(measured[0])
