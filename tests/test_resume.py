"""A run killed with SIGKILL in the middle of an epoch resumes (`attnrepro train --resume RUN_DIR`) and ends
exactly where the uninterrupted run with the same seed ends: same weights, metrics and learning curve."""

import csv
import json

import pytest
import torch
from test_cli import assert_clean_error, attnrepro

pytestmark = pytest.mark.slow

# cho2014: length-bucketed token-budget batches; xu2015-hard: sampled attention, so the RNG state matters too.
CASES = {
    "cho2014": ["--set", "train.max_epochs=3"],
    "xu2015-hard": ["--set", "train.max_epochs=2", "--set", "data.batch_size=8"],
}


def _train(name: str, run_dir, extra: list[str], env: dict | None = None):
    return attnrepro("train", name, "--preset", "tiny", "--seed", "5", "--set", "train.resume_every_n_steps=2",
                     *extra, "--run-dir", str(run_dir), env=env)


def _curve(run_dir) -> list[tuple]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as fh:
        return [(r["step"], r.get("train/loss"), r.get("val/loss")) for r in csv.DictReader(fh)]


@pytest.mark.parametrize("name", list(CASES))
def test_killed_run_resumes_to_the_uninterrupted_result(name, data_root, tmp_path):
    if name.startswith("xu") and not (data_root / "flickr8k" / "Images").is_dir():
        pytest.skip("Flickr8k images not under the data root")
    full, killed = tmp_path / "full", tmp_path / "killed"
    result = _train(name, full, CASES[name])
    assert result.returncode == 0, result.stderr[-3000:]

    crashed = _train(name, killed, CASES[name], env={"ATTNREPRO_INJECT_FAULT": "kill@5"})
    assert crashed.returncode == -9  # SIGKILL: no chance to clean up
    assert not (killed / "metrics.json").exists()
    resume_ckpt = torch.load(killed / "checkpoints" / "resume.ckpt", map_location="cpu", weights_only=True)
    assert resume_ckpt["global_step"] == 4  # the last checkpoint before the kill

    resumed = attnrepro("train", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, killed))
    best = [k for k in a["training"] if k.startswith("best_val_")]  # best_val_loss; captioning: best_val_bleu4
    assert len(best) == 1
    for key in ("steps", "epochs_completed", "target_tokens", *best):
        assert a["training"][key] == b["training"][key], key
    steps_per_epoch = a["training"]["steps"] // a["training"]["epochs_completed"]
    assert 4 % steps_per_epoch != 0  # the kill and the checkpoint fell in the middle of an epoch
    assert a["splits"] == b["splits"]
    weights_a = torch.load(full / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    weights_b = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert _curve(full) == _curve(killed)  # the learning curve has no gap and no repeated steps
    provenance = json.loads((killed / "provenance.json").read_text())
    assert provenance["resumed"][0]["from"] == "resume.ckpt"


def test_resume_refuses_what_it_cannot_resume(tmp_path):
    assert_clean_error(attnrepro("train", "--resume", str(tmp_path)), "not a run directory")


def test_an_interrupted_benchmark_resumes_its_unfinished_run(data_root, tmp_path):
    """benchmarks/multi30k.py killed mid-run goes on from the run's checkpoint when started again, and the run
    ends on the same steps and scores as one never interrupted."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]

    def bench(out, env=None):
        command = [sys.executable, "benchmarks/multi30k.py", "--preset", "tiny", "--models", "cho2014", "--out",
                   str(out), "--set", "train.resume_every_n_steps=2", "--set", "train.max_epochs=3"]
        return subprocess.run(command, cwd=repo, capture_output=True, text=True, env={**os.environ, **(env or {})},
                              timeout=600)

    assert bench(tmp_path / "full").returncode == 0
    killed = bench(tmp_path / "killed", env={"ATTNREPRO_INJECT_FAULT": "kill@5"})
    assert killed.returncode == -9
    again = bench(tmp_path / "killed")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stdout
    full, resumed = (json.loads((d / "runs" / "cho2014" / "metrics.json").read_text())
                     for d in (tmp_path / "full", tmp_path / "killed"))
    assert resumed["training"]["steps"] == full["training"]["steps"]
    assert resumed["splits"]["test_2016_flickr"]["bleu"] == full["splits"]["test_2016_flickr"]["bleu"]
