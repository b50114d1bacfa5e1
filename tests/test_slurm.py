"""`attnrepro sweep --executor slurm` against a real SLURM cluster: `.ci/slurm` starts a one-node one on
localhost and .ci/run exports its partition as $ATTNREPRO_TEST_SLURM_PARTITION; without it (a developer's
machine) these tests skip. Submission and the live table, a requeue mid-training that resumes exactly, a
time-limit USR2 that requeues itself, retries, a 2-task DDP job, and no duplicates when a plan is re-run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_cli import attnrepro

from harness.sweep import RunSpec, SlurmQueue, render_sbatch

PARTITION = os.environ.get("ATTNREPRO_TEST_SLURM_PARTITION")
needs_slurm = pytest.mark.skipif(
    not PARTITION, reason="no SLURM cluster: set ATTNREPRO_TEST_SLURM_PARTITION (`.ci/slurm` starts one as root)")

# 10 steps of 20 sentences per epoch (tiny: 200 training pairs); resume.ckpt every 2 steps
OVERRIDES = ["data.batch_sentences=20", "train.max_epochs=2", "train.resume_every_n_steps=2"]
LONG = ["data.batch_sentences=20", "train.max_epochs=1000", "train.max_minutes=1",  # a minute of training,
        "train.resume_every_n_steps=2"]  # counted over attempts (Lightning's Timer is in the checkpoint)


def _plan(path: Path, runs: list[dict], retries: int = 1) -> Path:
    path.write_text(yaml.safe_dump({"name": path.stem, "out": str(path.parent / f"{path.stem}-out"),
                                    "retries": retries, "runs": runs}))
    return path


def _settings(path: Path, **extra) -> Path:
    path.write_text(yaml.safe_dump({"partition": PARTITION, "time_min": 30, "gpus": False, **extra}))
    return path


def _sweep(plan: Path, settings: Path, executor: str = "slurm", background: bool = False):
    args = ["sweep", str(plan), "--executor", executor]
    args += ["--slurm-settings", str(settings)] if executor == "slurm" else ["--slots", "2"]
    if background:  # output to a file: a full pipe would stall the sweep while the test waits
        env = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "200"}
        log = plan.with_suffix(f".{time.monotonic_ns()}.log")
        with open(log, "w") as fh:
            process = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=fh,
                                       stderr=subprocess.STDOUT, text=True, env=env)
        process.log = log
        return process
    return attnrepro(*args, env={"COLUMNS": "200"})


def _end(process, timeout_s: float = 600) -> str:
    """Wait for a background sweep; its output."""
    process.wait(timeout=timeout_s)
    output = process.log.read_text()
    assert process.returncode == 0, output[-5000:]
    return output


def _status(plan: Path) -> dict:
    path = plan.parent / f"{plan.stem}-out" / "sweep.json"
    return json.loads(path.read_text())["runs"] if path.is_file() else {}


def _wait(condition, timeout_s: float, what: str, process=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}: {process.log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True).stdout


def _quiet(*command: str) -> str:
    """A SLURM command's output, whatever its exit status (`scontrol show step` of a job with none fails)."""
    return subprocess.run(command, capture_output=True, text=True).stdout


def _job(job_id: str) -> dict:
    """`scontrol show job` as a dict (JobState, Reason, Restarts, TimeLimit...)."""
    fields = {}
    for token in _scontrol("show", "job", "--oneliner", job_id).split():
        key, _, value = token.partition("=")
        fields.setdefault(key, value)
    return fields


def _release(job_id: str, **updates: str) -> None:
    """SLURM holds a requeued job back for two minutes (BeginTime); let it start now, once the node has let go
    of the last attempt (what the hold leaves time for): no job step of it left, the node idle again."""
    _wait(lambda: _job(job_id)["JobState"] == "PENDING", 180, f"job {job_id} back in the queue")
    _wait(lambda: _quiet("scontrol", "show", "step", "--oneliner", job_id).find("StepId=") < 0
          and _quiet("sinfo", "-h", "-p", PARTITION, "-o", "%T").strip() == "idle", 60,
          f"the node to finish job {job_id}'s last attempt")
    _scontrol("update", f"jobid={job_id}", "StartTime=now", *(f"{k}={v}" for k, v in updates.items()))


def _curve_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh) if r.get("train/loss")]


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def test_a_cpu_partition_gets_processes_not_gpus(tmp_path):
    spec = RunSpec("cho2014", "tiny", 1, None, [], devices=2, nodes=1, run_dir=tmp_path / "cho2014-tiny-seed1")
    script = render_sbatch(spec, {"partition": "cpu", "gpus": False, "signal_delay_s": 50}, tmp_path)
    assert "#SBATCH --ntasks-per-node=2" in script and "#SBATCH --signal=USR2@50" in script
    assert "gpus" not in script
    assert "#SBATCH --gpus-per-node=2" in render_sbatch(spec, {"partition": "gpu"}, tmp_path)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data_root):
    """The same plan of two tiny runs on SLURM and on the local executor."""
    root = tmp_path_factory.mktemp("slurm")
    runs = [{"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [1, 2], "overrides": OVERRIDES}]
    on_slurm, local = _plan(root / "two.yaml", runs), _plan(root / "two-local.yaml", runs)
    result = _sweep(on_slurm, _settings(root / "slurm.yaml"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    baseline = _sweep(local, None, executor="local")
    assert baseline.returncode == 0, baseline.stderr[-3000:]
    return root, on_slurm, local, result


@needs_slurm
@pytest.mark.slow
def test_a_plan_of_two_runs_reaches_done_with_the_local_executors_results(two_runs):
    root, on_slurm, local, result = two_runs
    status = _status(on_slurm)
    assert {v["state"] for v in status.values()} == {"done"} and len(status) == 2
    assert all(v["attempts"] == 1 and v["job_id"].isdigit() for v in status.values())
    lines = result.stdout.splitlines()
    assert lines[-1].endswith("0 queued, 0 running, 2 done, 0 failed"), result.stdout
    assert not [line for line in lines if ": failed" in line], result.stdout
    for label, entry in status.items():
        assert _job(entry["job_id"])["JobState"] == "COMPLETED"
        a, b = Path(entry["run_dir"]), Path(_status(local)[label]["run_dir"])
        assert _files(a) == _files(b)
        metrics_a, metrics_b = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
        assert metrics_a["splits"] == metrics_b["splits"]
        for key in ("steps", "epochs_completed", "target_tokens", "best_val_loss"):
            assert metrics_a["training"][key] == metrics_b["training"][key], key
        assert metrics_a["training"]["steps"] == 20


@needs_slurm
@pytest.mark.slow
def test_the_live_table_reads_the_real_queue(tmp_path):
    queue = SlurmQueue(poll_s=0)
    job_id = subprocess.run(["sbatch", "--parsable", "--hold", f"--partition={PARTITION}", "--job-name=held",
                             f"--output={tmp_path}/%j.out", "--wrap", "sleep 3"],
                            capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    try:
        assert queue.poll([job_id]) and queue.state(job_id) == "PENDING"
        assert queue.table_state(job_id) == "queued" and queue.note(job_id) == f"job {job_id} PENDING (JobHeldUser)"
        _scontrol("release", job_id)
        _wait(lambda: queue.poll([job_id]) and queue.state(job_id) == "RUNNING", 30, "the job to run")
        assert queue.table_state(job_id) == "running"
        _wait(lambda: queue.poll([job_id]) and queue.state(job_id) == "COMPLETED", 30, "the job to end")
    finally:
        subprocess.run(["scancel", job_id])
    assert queue.poll(["999999"]) and queue.state("999999") == "ENDED"  # a job SLURM does not know


@needs_slurm
@pytest.mark.slow
def test_a_requeued_job_resumes_to_the_uninterrupted_result(two_runs):
    root, _, local, _ = two_runs
    plan = _plan(root / "requeue.yaml", [
        {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [1], "overrides": OVERRIDES}])
    run_dir = root / "requeue-out" / "cho2014-tiny-seed1"
    sweep = _sweep(plan, root / "slurm.yaml", background=True)
    try:
        _wait(lambda: (run_dir / "checkpoints" / "resume.ckpt").is_file(), 300, "the first resume.ckpt", sweep)
        job_id = _status(plan)["cho2014-tiny-seed1"]["job_id"]
        _scontrol("requeue", job_id)  # what a preemption does: SIGTERM now, the same job queued again
        _release(job_id)
        _end(sweep)
    finally:
        sweep.kill()
    assert _job(job_id)["Restarts"] == "1" and _status(plan)["cho2014-tiny-seed1"]["attempts"] == 1
    resumed = json.loads((run_dir / "provenance.json").read_text())["resumed"]
    assert len(resumed) == 1 and resumed[0]["from"] == "resume.ckpt"
    baseline = Path(_status(local)["cho2014-tiny-seed1"]["run_dir"])
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (baseline, run_dir))
    assert a["splits"] == b["splits"]
    for key in ("steps", "epochs_completed", "target_tokens", "best_val_loss"):
        assert a["training"][key] == b["training"][key], key
    weights_a, weights_b = _weights(baseline), _weights(run_dir)
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert _curve_steps(run_dir) == _curve_steps(baseline)  # no step repeated, none missing


@needs_slurm
@pytest.mark.slow
def test_a_job_at_its_time_limit_requeues_itself_and_finishes(tmp_path, data_root):
    plan = _plan(tmp_path / "limit.yaml", [
        {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [1], "overrides": LONG}], retries=0)
    settings = _settings(tmp_path / "slurm.yaml", signal_delay_s=50)  # USR2 50 s before the time limit
    run_dir = tmp_path / "limit-out" / "cho2014-tiny-seed1"
    sweep = _sweep(plan, settings, background=True)
    try:
        _wait(lambda: (run_dir / "checkpoints" / "resume.ckpt").is_file(), 300, "the first resume.ckpt", sweep)
        job_id = _status(plan)["cho2014-tiny-seed1"]["job_id"]
        # Bring the time limit (whole minutes since the start) to 35-95 s from now. SLURM checks limits every
        # 30 s and signals once the end is within signal_delay + 30 s: USR2 comes within 45 s, before the end.
        elapsed = time.time() - time.mktime(time.strptime(_job(job_id)["StartTime"], "%Y-%m-%dT%H:%M:%S"))
        minutes = int(elapsed // 60) + 1 + (60 - elapsed % 60 < 35)
        _scontrol("update", f"jobid={job_id}", f"TimeLimit={minutes}")
        _wait(lambda: _job(job_id)["Restarts"] == "1", 180, "the job to requeue itself", sweep)
        _release(job_id, TimeLimit="5")  # the second attempt may take the rest of the run
        _end(sweep)
    finally:
        sweep.kill()
    log = "".join(p.read_text() for p in (tmp_path / "limit-out" / "submitit").glob(f"{job_id}_0_log.*"))
    # submitit calls it preemption: its own clock still has the 30 minutes the job was submitted with
    assert "Caught signal SIGUSR2" in log and f"Requeued job {job_id}" in log, log[-3000:]
    assert _status(plan)["cho2014-tiny-seed1"]["state"] == "done"
    resumed = json.loads((run_dir / "provenance.json").read_text())["resumed"]
    # It resumes from the newer of resume.ckpt and last.ckpt: which one depends on whether the signal came
    # before or after the epoch-end checkpoint, a matter of timing on a loaded machine.
    assert len(resumed) == 1 and resumed[0]["from"] in ("resume.ckpt", "last.ckpt")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["splits"] and metrics["training"]["steps"] > 2  # past the first checkpoint
    assert _curve_steps(run_dir) == list(range(metrics["training"]["steps"]))  # none repeated, none missing


@needs_slurm
@pytest.mark.slow
def test_a_failing_run_is_retried_and_reported_while_the_other_finishes(tmp_path, data_root):
    plan = _plan(tmp_path / "faulty.yaml", [
        {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [3]},
        {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [4], "env": {"ATTNREPRO_INJECT_FAULT": "kill@2"}},
    ], retries=1)
    result = _sweep(plan, _settings(tmp_path / "slurm.yaml"))
    assert result.returncode != 0 and "1 of 2 runs failed" in result.stderr
    status = _status(plan)
    assert status["cho2014-tiny-seed3"]["state"] == "done" and status["cho2014-tiny-seed3"]["attempts"] == 1
    failed = status["cho2014-tiny-seed4"]
    assert failed["state"] == "failed" and failed["attempts"] == 2  # the first try and one retry
    # SIGKILL leaves no result behind: the queue's word and the log say what happened
    assert f"SLURM job {failed['job_id']} ended FAILED without a result" in failed["error"]


@needs_slurm
@pytest.mark.slow
def test_a_two_task_job_trains_one_ddp_run(two_runs):
    root, _, local, _ = two_runs
    plan = _plan(root / "ddp.yaml", [{"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [1],
                                      "overrides": OVERRIDES, "devices": 2, "env": {"WANDB_MODE": "offline"}}])
    result = _sweep(plan, root / "slurm.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    entry = _status(plan)["cho2014-tiny-seed1"]
    assert _job(entry["job_id"])["NumTasks"] == "2"
    assert sorted(p.name for p in (root / "ddp-out").iterdir()) == ["cho2014-tiny-seed1", "submitit", "sweep.json"]
    run_dir = Path(entry["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["devices"] == 2
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    # batch_sentences counts one step's sentences on all ranks: the same steps and tokens as one process
    single = json.loads((Path(_status(local)["cho2014-tiny-seed1"]["run_dir"]) / "metrics.json").read_text())
    for key in ("steps", "epochs_completed", "target_tokens"):
        assert metrics["training"][key] == single["training"][key], key


@needs_slurm
@pytest.mark.slow
def test_rerunning_a_plan_while_its_jobs_are_queued_submits_no_duplicates(tmp_path, data_root):
    plan = _plan(tmp_path / "again.yaml", [
        {"reproductions": ["cho2014"], "presets": ["tiny"], "seeds": [1, 2], "overrides": OVERRIDES}])
    settings = _settings(tmp_path / "slurm.yaml", additional={"hold": True})  # queued until released
    first, second = _sweep(plan, settings, background=True), None
    try:
        _wait(lambda: len([v for v in _status(plan).values() if v.get("job_id")]) == 2, 180, "submission", first)
        jobs = {label: v["job_id"] for label, v in _status(plan).items()}
        first.kill()  # the user's terminal went away; the jobs stay queued
        first.wait()
        second = _sweep(plan, settings, background=True)
        _wait(lambda: all(v.get("reattached") for v in _status(plan).values()), 90, "the jobs watched again", second)
        for job_id in jobs.values():
            _scontrol("release", job_id)
        _end(second)
    finally:
        for process in (first, second):
            if process is not None:
                process.kill()
    status = _status(plan)
    assert {label: v["job_id"] for label, v in status.items()} == jobs
    assert all(v["state"] == "done" and v["attempts"] == 1 for v in status.values())
    queue = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%o"], capture_output=True,
                           text=True, check=True).stdout  # %o: the sbatch script, in this plan's submitit folder
    submitted = [line.split("|")[0] for line in queue.splitlines() if str(tmp_path) in line]
    assert sorted(submitted) == sorted(jobs.values())
