"""One writer per run directory, sweeps that stop cleanly, and training that notices damage: real processes, as a
hostile or unlucky user would meet them."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_cli import assert_clean_error, attnrepro

from reproductions.common import rundir

pytestmark = pytest.mark.slow

TINY = ["--preset", "tiny", "--set", "train.resume_every_n_steps=5"]


def _start(*args: str, env=None) -> subprocess.Popen:
    import os

    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "WANDB_MODE": "disabled", **(env or {})})


def _wait_for(condition, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def _curve_steps(run_dir) -> list[int]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as fh:
        return [int(float(r["step"])) for r in csv.DictReader(fh) if r.get("train/loss")]


def test_a_second_writer_on_a_run_directory_is_refused_in_one_line(data_root, tmp_path):
    run_dir = tmp_path / "run"
    # long enough to be still training while the other two commands run on any machine; killed at the end
    first = _start("train", "cho2014", *TINY, "--set", "train.max_epochs=1000", "--seed", "3", "--run-dir",
                   str(run_dir))
    try:
        _wait_for(lambda: rundir.lock_holder(run_dir) is not None, "the first run's lock")
        second = attnrepro("train", "cho2014", *TINY, "--seed", "4", "--run-dir", str(run_dir))
        assert second.returncode == 2
        assert f"being written by another process (pid {first.pid}" in _one_line(second)
        resumed = attnrepro("train", "--resume", str(run_dir))
        assert resumed.returncode == 2 and f"pid {first.pid}" in _one_line(resumed)
        assert first.poll() is None, first.stderr.read()[-3000:]  # the refusals came while it was training
        assert json.loads((run_dir / "provenance.json").read_text())["seed"] == 3
    finally:
        first.kill()
        first.wait(timeout=60)
    assert rundir.lock_holder(run_dir) is None  # released with its process, however it ended


def _plan(tmp_path, epochs: int):
    out = tmp_path / "out"
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"name": "one", "out": str(out), "retries": 0, "runs": [
        {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [1],
         "overrides": [f"train.max_epochs={epochs}", "train.resume_every_n_steps=5"]}]}))
    return plan, out / "cho2014-tiny-seed1"


def _uninterrupted(tmp_path, epochs: int) -> dict:
    run_dir = tmp_path / "uninterrupted"
    result = attnrepro("train", "cho2014", "--preset", "tiny", "--seed", "1", "--run-dir", str(run_dir),
                       "--set", f"train.max_epochs={epochs}", "--set", "train.resume_every_n_steps=5")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_sweep_rerun_has_one_writer_and_the_uninterrupted_result(data_root, tmp_path, how):
    epochs = 6
    plan, run_dir = _plan(tmp_path, epochs)
    sweep = _start("sweep", str(plan), "--executor", "local", "--slots", "1")
    _wait_for(lambda: (run_dir / "checkpoints" / "resume.ckpt").is_file(), "the run's first checkpoint")
    sweep.send_signal(getattr(signal, how))
    code = sweep.wait(timeout=120)
    if how == "SIGKILL":  # the sweep had no say: its run trains on, adopted by init, and holds the lock
        assert code == -9 and rundir.lock_holder(run_dir) is not None
    else:  # the sweep stopped its run and said which
        assert code == 130 and "stopped its runs: cho2014-tiny-seed1" in sweep.stdout.read()
        _wait_for(lambda: rundir.lock_holder(run_dir) is None, "the stopped run to let go of its lock", 60)
    rerun = attnrepro("sweep", str(plan), "--executor", "local", "--slots", "1")
    assert rerun.returncode == 0, rerun.stderr[-3000:] + rerun.stdout[-3000:]
    if how == "SIGKILL":
        assert "already running" in rerun.stdout  # watched, never a second writer
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = _uninterrupted(tmp_path, epochs)
    assert metrics["splits"] == expected["splits"]
    for key in ("steps", "target_tokens", "best_val_loss"):
        assert metrics["training"][key] == expected["training"][key], key
    steps = _curve_steps(run_dir)
    assert steps == _curve_steps(tmp_path / "uninterrupted")  # a whole learning curve: no gap, no repeat


def _killed_run(tmp_path, at: int = 12, name: str = "killed"):
    """A tiny run (11 steps per epoch) killed at step `at`: resume.ckpt every 5 steps, last.ckpt at epoch ends."""
    run_dir = tmp_path / name
    crashed = attnrepro("train", "cho2014", *TINY, "--set", "train.max_epochs=3", "--run-dir", str(run_dir),
                        env={"ATTNREPRO_INJECT_FAULT": f"kill@{at}"})
    assert crashed.returncode == -9
    return run_dir


def _poison(checkpoint) -> None:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))
    torch.save(ckpt, checkpoint)  # NaN weights that load without complaint ...
    rundir.write_checksum(checkpoint, rundir.file_sha256(checkpoint))  # ... as a diverged run would write them


def test_damaged_checkpoints_are_passed_over_or_stop_the_resume_in_one_line(data_root, tmp_path):
    fallback = _killed_run(tmp_path, at=15, name="fallback")  # resume.ckpt at step 15, last.ckpt at 11
    _poison(fallback / "checkpoints" / "resume.ckpt")
    resumed = attnrepro("train", "--resume", str(fallback))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "passing over" in resumed.stdout and "non-finite weights" in resumed.stdout
    assert json.loads((fallback / "provenance.json").read_text())["resumed"][0]["from"] == "last.ckpt"

    run_dir = _killed_run(tmp_path, at=8)  # resume.ckpt at step 5 only
    resume_ckpt = run_dir / "checkpoints" / "resume.ckpt"
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()
    _poison(resume_ckpt)
    stopped = attnrepro("train", "--resume", str(run_dir))
    assert stopped.returncode == 2 and "non-finite weights" in _one_line(stopped)
    _poison(resume_ckpt)
    data = bytearray(resume_ckpt.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(b ^ 0xFF for b in data[len(data) // 2:len(data) // 2 + 64])
    resume_ckpt.write_bytes(bytes(data))  # 64 flipped bytes, same size: it may well still load
    stopped = attnrepro("train", "--resume", str(run_dir))
    assert stopped.returncode == 2 and "sha256 differs" in _one_line(stopped)
    rundir.checksum_path(resume_ckpt).unlink()  # a checkpoint of an older release: no checksum to go by
    resume_ckpt.write_bytes(resume_ckpt.read_bytes()[:5000])  # truncated
    stopped = attnrepro("train", "--resume", str(run_dir))
    assert stopped.returncode == 2 and "unreadable" in _one_line(stopped)
    assert not (run_dir / "metrics.json").exists()  # never rc 0 with a score of a broken model


def test_a_loss_that_becomes_nan_stops_the_run_with_its_step(data_root, tmp_path):
    result = attnrepro("train", "cho2014", *TINY, "--set", "train.log_every_n_steps=1", "--run-dir",
                       str(tmp_path / "nan"), env={"ATTNREPRO_INJECT_FAULT": "nan@3"})  # a weight becomes NaN
    assert result.returncode == 2
    line = [line for line in result.stderr.splitlines() if line.startswith("attnrepro: error:")]
    assert line and "NaN or infinite by step 4" in line[0], result.stderr[-3000:]
    assert not (tmp_path / "nan" / "metrics.json").exists()  # never rc 0 with the score of a broken model


def test_a_run_killed_before_its_first_checkpoint_starts_again_on_resume(data_root, tmp_path):
    run_dir = tmp_path / "early"
    crashed = attnrepro("train", "cho2014", "--preset", "tiny", "--run-dir", str(run_dir),
                        env={"ATTNREPRO_INJECT_FAULT": "kill@1"})
    assert crashed.returncode == -9 and not (run_dir / "checkpoints" / "resume.ckpt").exists()
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "checkpoints" / ".resume.ckpt.x1y2.tmp").write_bytes(b"half")  # a write the kill cut short
    resumed = attnrepro("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "starting it again from step 0" in resumed.stdout
    assert json.loads((run_dir / "metrics.json").read_text())["splits"]
    assert not list(run_dir.rglob(".*.tmp"))


def test_damaged_run_files_and_foreign_checkpoints_get_one_line(data_root, tmp_path):
    run_dir = _killed_run(tmp_path)
    resumed = attnrepro("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    other = tmp_path / "other"
    assert attnrepro("train", "cho2014", "--preset", "tiny", "--seed", "2", "--run-dir", str(other),
                     "--no-evaluate").returncode == 0
    (run_dir / "checkpoints" / "foreign.ckpt").write_bytes((other / "checkpoints" / "last.ckpt").read_bytes())
    refused = attnrepro("evaluate", str(run_dir / "checkpoints" / "foreign.ckpt"))
    assert refused.returncode == 2 and "is not a checkpoint of the run" in _one_line(refused)
    metrics = (run_dir / "metrics.json").read_text()
    (run_dir / "metrics.json").write_text("[]")
    assert_clean_error(attnrepro("evaluate", str(run_dir)), "metrics.json does not hold a JSON mapping")
    (run_dir / "metrics.json").write_text(metrics)
    config = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text("model: [unclosed\n")
    report = attnrepro("report", str(run_dir), "--out", str(tmp_path / "report"))
    assert report.returncode == 2 and "config.yaml is not valid YAML" in _one_line(report)
    edited = config.replace("hidden: 16", "hidden: 24")
    assert edited != config
    (run_dir / "config.yaml").write_text(edited)
    (run_dir / "metrics.json").unlink()  # so that resume has work to do
    mismatch = attnrepro("train", "--resume", str(run_dir))
    assert mismatch.returncode == 2 and "does not fit the run's config.yaml" in _one_line(mismatch)


def test_the_main_job_checks_java_before_its_first_run(data_root, tmp_path):
    import os

    bare = tmp_path / "bin"  # a PATH with git but without java
    bare.mkdir()
    for tool in ("git",):
        found = next((Path(d) / tool for d in os.environ["PATH"].split(os.pathsep) if (Path(d) / tool).is_file()), None)
        if found:
            (bare / tool).symlink_to(found)
    result = attnrepro("reproduce", "--preset", "tiny", "--out", str(tmp_path / "out"), env={"PATH": str(bare)})
    assert result.returncode == 2
    line = _one_line(result)
    assert "needs Java" in line and "--only bahdanau2014 --only vaswani2017" in line
    assert not (tmp_path / "out" / "plan.yaml").exists()  # nothing started, nothing half-written


def test_a_sweep_job_never_clears_a_run_directory_another_process_writes(tmp_path, monkeypatch):
    """A sweep job starting a run anew clears what a dead attempt left, but only holding the run's lock: a
    directory that another process writes (a `train` by hand, a second sweep) is refused, not deleted."""
    import harness.train
    from harness.sweep import RunSpec, TrainJob

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("kept: true\n")
    spec = RunSpec("cho2014", "tiny", 1, "en-de", [], 1, 1, run_dir)
    started = []
    monkeypatch.setattr(harness.train, "train_spec", lambda spec, launch: started.append(spec.run_dir))
    monkeypatch.setattr("harness.sweep.REQUEUE_WAIT_S", 0.5)  # how long it waits for the writer to let go
    with rundir.RunLock(run_dir):  # the live writer
        with pytest.raises(rundir.RunDirBusy, match="being written by another process"):
            TrainJob(spec, "group")()
    assert (run_dir / "config.yaml").read_text() == "kept: true\n" and started == []
    TrainJob(spec, "group")()  # the writer has gone: the dead attempt's files go, the run starts afresh
    assert started == [run_dir] and sorted(p.name for p in run_dir.iterdir()) == [rundir.LOCK_FILE]


def test_a_requeued_job_waits_for_the_last_attempts_process_to_let_go(tmp_path, monkeypatch):
    """SLURM can start a requeued job's next attempt while the last attempt's process is still exiting (it
    holds the run's lock a moment longer): the new attempt waits for it instead of failing as a second writer."""
    import harness.train
    from harness.sweep import RunSpec, TrainJob

    run_dir = tmp_path / "run"
    spec = RunSpec("cho2014", "tiny", 1, "en-de", [], 1, 1, run_dir)
    started = []  # when the run started
    monkeypatch.setattr(harness.train, "train_spec", lambda spec, launch: started.append(time.monotonic()))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from reproductions.common import rundir\n"
                               "with rundir.RunLock(sys.argv[1]):\n print('held', flush=True); time.sleep(2)",
                               str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    held_at = time.monotonic()
    TrainJob(spec, "group")()  # without the wait: RunDirBusy, as for a live second writer
    assert holder.wait(timeout=30) == 0 and len(started) == 1
    assert started[0] - held_at > 1.5  # not before the holder let go, two seconds after it said "held"


def test_a_loss_that_turns_nan_after_the_last_read_still_stops_the_run():
    """Losses are read every `every` steps; a NaN in the steps after the last read is caught at the end."""
    from types import SimpleNamespace

    from harness.train import FiniteGuard
    from reproductions.common.errors import AttnreproError

    guard, module = FiniteGuard(every=100), torch.nn.Linear(2, 2)
    guard.on_train_batch_end(SimpleNamespace(global_step=100), module, torch.tensor(1.0), None, 0)
    guard.on_train_batch_end(SimpleNamespace(global_step=105), module, torch.tensor(float("nan")), None, 0)
    with pytest.raises(AttnreproError, match="became NaN or infinite by step 107"):
        guard.on_train_end(SimpleNamespace(global_step=107), module)
    fine = FiniteGuard(every=100)
    fine.on_train_batch_end(SimpleNamespace(global_step=105), module, torch.tensor(2.0), None, 0)
    fine.on_train_end(SimpleNamespace(global_step=107), module)


def test_a_sweep_resumes_a_run_killed_between_its_scores_and_its_figures(tmp_path):
    from harness.sweep import RunSpec, run_state

    spec = RunSpec("cho2014", "tiny", 1, "en-de", [], 1, 1, tmp_path / "run")
    assert run_state(spec) == "new"
    rundir.update_metrics(spec.run_dir, "splits", {"test_2016_flickr": {"bleu": 1.0}})
    assert run_state(spec) == "partial"  # `resume` then draws the figures
    rundir.update_metrics(spec.run_dir, "status", {"finished": True})
    assert run_state(spec) == "done"
