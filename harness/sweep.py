"""`attnrepro sweep PLAN.yaml`: expand a plan into runs and execute them with submitit's executors.

A plan (YAML) names reproductions, presets, seeds, language pairs and overrides; every combination is a
run with its own directory under the plan's `out` folder:

    name: seeds
    out: runs/sweeps/seeds          # default: runs/sweeps/NAME
    retries: 1                      # extra attempts for a failed run
    runs:
      - reproductions: [bahdanau2014, cho2014]
        presets: [quick]
        seeds: [1, 2, 3]
        pairs: [en-de]              # translation only; captioning runs ignore it
        overrides: [train.max_steps=2000]
        devices: 1                  # GPUs per run (CPU: 1 process)
        nodes: 1                    # SLURM only: multi-node DDP through Lightning's SLURM environment
        env: {}                     # extra environment variables for the run's process

Executors: `local` (submitit.LocalExecutor: runs packed onto the visible GPUs, or `--slots` CPU processes,
the rest queued), `slurm` (submitit.AutoExecutor: one sbatch job per run with partition, account, time...
from a settings file; jobs requeue on preemption and resume from their checkpoint) and `debug`
(submitit.DebugExecutor: in this process, one after the other). A finished run is skipped, an interrupted
one resumed, a failed one retried up to `retries` times; one failure never stops the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from rich.console import Console
from rich.live import Live
from rich.markup import escape

from reproductions import registry, tasks
from reproductions.common import rundir
from reproductions.common.config import ConfigError, load_yaml
from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_json

from . import tables
from .runspec import RunSpec

SLURM_SETTINGS = Path("~/.config/attnrepro/slurm.yaml")


class PlanError(AttnreproError):
    pass


@dataclass
class Plan:
    name: str
    out: Path
    retries: int
    runs: list[RunSpec]


@dataclass
class PlanGroup:
    """One `runs:` entry of a plan: every combination of its lists is a run."""

    # Each of these takes a list or one value.
    reproductions: list[str] | str
    presets: list[str] | str = field(default_factory=lambda: ["quick"])
    seeds: list[int] | int = field(default_factory=lambda: [1])
    pairs: list[str] | str = field(default_factory=list)  # translation only; captioning runs ignore it
    overrides: list[str] | str = field(default_factory=list)
    devices: int = 1  # GPUs per run (CPU: 1 process)
    nodes: int = 1  # SLURM: multi-node DDP through Lightning's SLURM environment
    env: dict[str, Any] = field(default_factory=dict)  # extra environment variables for the run's process


@dataclass
class PlanFile:
    runs: list[PlanGroup]
    name: str | None = None  # default: the file's name
    out: str | None = None  # default: runs/sweeps/NAME
    retries: int = 1  # extra attempts for a failed run


@dataclass
class SlurmSettings:
    """~/.config/attnrepro/slurm.yaml (or --slurm-settings FILE)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_min: int | None = None  # the job's time limit (default: 24 hours)
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    setup: list[str] | None = None  # shell lines run before the job (module load ..., source venv)
    additional: dict[str, Any] | None = None  # more sbatch options, e.g. {gres: "gpu:a100:1"}
    gpus: bool = True  # false on a CPU partition: `devices` are then processes (gloo), no --gpus-per-node
    signal_delay_s: int = 120  # USR2 this long before the time limit: checkpoint and requeue


def _as_list(value) -> list:
    return list(value) if isinstance(value, list) else [value]


def load_plan(path: Path | str) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"plan {path} does not exist")
    try:
        data = load_yaml(PlanFile, path, what="plan")
    except ConfigError as err:
        raise PlanError(f"plan {err}") from None
    if data.retries < 0:
        raise PlanError(f"plan {path}: 'retries' must be a whole number >= 0, got {data.retries!r}")
    name = data.name or path.stem
    out = Path(data.out or Path("runs") / "sweeps" / name)
    specs: list[RunSpec] = []
    for i, group in enumerate(data.runs):
        where = f"plan {path}, runs[{i}]"
        lists = {key: _as_list(getattr(group, key)) for key in ("reproductions", "presets", "seeds", "pairs",
                                                                 "overrides")}
        for key in ("reproductions", "presets", "seeds"):
            if not lists[key]:
                raise PlanError(f"{where}: '{key}' is empty; give a value or a list")
        try:
            names = [registry.get(n).name for n in lists["reproductions"]]
        except AttnreproError as err:  # an unknown name: said with the file and the entry it is in
            raise PlanError(f"plan {path}: {err} (runs[{i}])") from None
        env = {str(k): str(v) for k, v in group.env.items()}
        for repro_name, preset, seed, pair in itertools.product(names, lists["presets"], lists["seeds"],
                                                                lists["pairs"] or [None]):
            repro = registry.get(repro_name)
            pair = pair if tasks.get(repro.task).takes_pair else None
            label = f"{repro_name}-{preset}" + (f"-{pair}" if pair else "") + f"-seed{seed}"
            try:  # the run's config, resolved once: a bad preset or override fails here, before any run
                specs.append(RunSpec(repro_name, preset, seed, pair, list(lists["overrides"]), group.devices,
                                     group.nodes, out / label, env))
            except AttnreproError as err:
                raise PlanError(f"plan {path}: {err} (runs[{i}])") from None
    labels = [s.label for s in specs]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise PlanError(f"plan {path} names the same run twice: {', '.join(duplicates)}")
    return Plan(name, out, data.retries, specs)


def run_state(spec: RunSpec) -> str:
    """done (scored, figures drawn), partial (a checkpoint to resume from, or scores without all their figures:
    resume draws them), or new."""
    metrics = rundir.RunDir(spec.run_dir).metrics()
    if metrics.get("splits"):
        return "done" if metrics.get("status", {}).get("finished") else "partial"
    if any((spec.run_dir / "checkpoints" / n).is_file() for n in ("resume.ckpt", "last.ckpt")):
        return "partial"
    return "new"


REQUEUE_WAIT_S = 120.0  # how long a job waits for an earlier attempt's process to let go of the run


class TrainJob:
    """What a submitit job runs: train a run, or resume it when it has a checkpoint. Checkpointable: on
    preemption or timeout SLURM requeues the same job, which then resumes."""

    def __init__(self, spec: RunSpec, group: str):
        self.spec, self.group = spec, group

    def __call__(self) -> dict:
        from . import quiet_known_noise
        from .train import Launch, resume, train_spec

        quiet_known_noise()  # a job's process never goes through the CLI's main()
        spec = self.spec
        os.environ.update(spec.env)
        if rundir.is_rank_zero():  # a requeued attempt may start while the last one's process is still exiting
            rundir.wait_for_writer(spec.run_dir, REQUEUE_WAIT_S)
        state = run_state(spec)
        if state == "partial":
            resume(spec.run_dir, devices=spec.devices, nodes=spec.nodes, group=self.group)
        elif state == "new":
            if spec.run_dir.exists() and rundir.is_rank_zero():  # an attempt that died before its first checkpoint
                with rundir.RunLock(spec.run_dir):  # refused, not deleted, while another process writes it
                    rundir.clear_run_dir(spec.run_dir)
            train_spec(spec, Launch(group=self.group))
        return rundir.RunDir(spec.run_dir).metrics()

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self)  # the requeued job resumes from the run's checkpoint


def slurm_settings(path: Path | str | None) -> dict:
    path = Path(path or os.environ.get("ATTNREPRO_SLURM_SETTINGS") or SLURM_SETTINGS).expanduser()
    if not path.is_file():
        raise PlanError(f"SLURM settings file {path} not found; create it with e.g. 'partition: gpu', "
                        "'account: myproject', 'time_min: 1440' (or pass --slurm-settings FILE)")
    try:
        settings = load_yaml(SlurmSettings, path, what="SLURM settings")
    except ConfigError as err:
        raise PlanError(str(err)) from None
    return {k: v for k, v in dataclasses.asdict(settings).items() if v is not None}


def slurm_parameters(spec: RunSpec, settings: dict) -> dict:
    """submitit SLURM parameters of one run: one task per device, on `nodes` nodes (Lightning reads SLURM's
    environment for DDP), USR2 `signal_delay_s` before the time limit so that submitit requeues the job."""
    params = {
        "job_name": spec.label,
        "nodes": spec.nodes,
        "ntasks_per_node": spec.devices,
        "time": int(settings.get("time_min", 24 * 60)),
        "signal_delay_s": int(settings.get("signal_delay_s", 120)),
        "additional_parameters": {"requeue": True, **(settings.get("additional") or {})},
    }
    if settings.get("gpus", True):
        params["gpus_per_node"] = spec.devices
    for key in ("partition", "account", "qos", "constraint", "cpus_per_task", "setup"):
        if settings.get(key) is not None:
            params[key] = settings[key]
    if settings.get("mem_gb"):
        params["mem"] = f"{settings['mem_gb']}GB"
    return params


def render_sbatch(spec: RunSpec, settings: dict, folder: Path) -> str:
    """The sbatch script submitit would submit for this run (shown by --dry-run, checked by the tests)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = "python -u -m submitit.core._submit " + str(folder)
    return _make_sbatch_string(command=command, folder=str(folder), **slurm_parameters(spec, settings))


def _executor(kind: str, folder: Path, spec: RunSpec, settings: dict | None, gpus: list[int]):
    import submitit

    if kind == "debug":
        return submitit.DebugExecutor(folder=str(folder))
    if kind == "slurm":
        executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        params = slurm_parameters(spec, settings or {})
        executor.update_parameters(**{f"slurm_{k}": v for k, v in params.items()})
        return executor
    executor = submitit.LocalExecutor(folder=str(folder))
    executor.update_parameters(timeout_min=7 * 24 * 60, gpus_per_node=len(gpus), visible_gpus=tuple(gpus))
    return executor


# squeue states of a job that is still in the queue (waiting, running or being requeued); any other state
# (COMPLETED, FAILED, TIMEOUT, CANCELLED, OUT_OF_MEMORY, NODE_FAIL...) or no entry at all means it has ended.
SLURM_WAITING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "STOPPED",
                 "RESV_DEL_HOLD", "PREEMPTED"}
SLURM_RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}


class SlurmQueue:
    """This sweep's jobs as the real queue reports them. squeue, not sacct: sacct needs SLURM's accounting
    database, which many clusters (and the CI one) do not run, and submitit's watcher then never sees a job
    end. Polled at most every `poll_s` seconds."""

    def __init__(self, poll_s: float = 5.0):
        self.poll_s = poll_s
        self._last = 0.0
        self.states: dict[str, tuple[str, str, str]] = {}  # job id -> (state, reason, job name)
        self._ended_since: dict[str, float] = {}

    def poll(self, job_ids: list[str], force: bool = False) -> bool:
        """Refresh the states of these jobs; False when squeue did not answer (try again at the next poll)."""
        if not job_ids or (not force and time.monotonic() - self._last < self.poll_s):
            return True
        self._last = time.monotonic()
        try:
            out = subprocess.run(["squeue", "--noheader", "--states=all", "--jobs=" + ",".join(job_ids),
                                  "--format=%i|%T|%r|%j"], capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise PlanError("squeue is not on PATH: --executor slurm needs SLURM's commands (run on a login "
                            "node of the cluster)") from None
        except subprocess.TimeoutExpired:
            return False
        if out.returncode != 0 and "Invalid job id" not in out.stderr:  # slurmctld busy or restarting
            return False
        self.states = {}
        for line in out.stdout.splitlines():
            job_id, state, reason, name = (line.split("|", 3) + ["", "", ""])[:4]
            self.states[job_id.strip()] = (state.split()[0] if state else "UNKNOWN", reason, name)
        return True

    def state(self, job_id: str) -> str:
        """squeue's state of a job, or ENDED when SLURM no longer lists it."""
        return self.states.get(job_id, ("ENDED", "", ""))[0]

    def table_state(self, job_id: str) -> str:
        return "running" if self.state(job_id) in SLURM_RUNNING else "queued"

    def note(self, job_id: str) -> str:
        state, reason, _ = self.states.get(job_id, ("ENDED", "", ""))
        return f"job {job_id} {state}" + (f" ({reason})" if reason and reason != "None" else "")

    def ended(self, job, grace_s: float = 15.0) -> bool:
        """The job has left the queue: every task wrote its result, or SLURM says it ended (after `grace_s`
        for result files still on their way through a network file system)."""
        if all(task.paths.result_pickle.exists() for task in _tasks(job)):
            return True
        if self.state(job.job_id) in SLURM_WAITING | SLURM_RUNNING | {"UNKNOWN"}:
            self._ended_since.pop(job.job_id, None)
            return False
        first = self._ended_since.setdefault(job.job_id, time.monotonic())
        return time.monotonic() - first >= grace_s


class SlurmJobLost(AttnreproError):
    """A SLURM job that ended without a result (killed at its time limit without requeue, cancelled, out of
    memory, node failure...)."""


def _tasks(job) -> list:
    return list(job._sub_jobs) or [job]  # a multi-task job (DDP) has one result file per task


def _result(job, queue: SlurmQueue | None):
    """The job's return value (task 0's); raises the job's exception."""
    if queue is not None and not all(task.paths.result_pickle.exists() for task in _tasks(job)):
        log = job.paths.stderr
        lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        raise SlurmJobLost(f"SLURM job {job.job_id} ended {queue.state(job.job_id)} without a result: "
                           f"{_error_line(chr(10).join(lines[-40:])) or 'no error output'} (log: {log})")
    return job.results()[0]


def _reattach(plan: Plan, status: dict, pending: list, running: dict, queue: SlurmQueue) -> None:
    """Jobs that an earlier `attnrepro sweep` of this plan submitted and that are still queued or running are
    watched again, not submitted a second time."""
    import submitit

    try:
        earlier = json.loads((plan.out / "sweep.json").read_text())
    except (OSError, ValueError):
        return
    if earlier.get("executor") != "slurm":
        return
    jobs = {label: entry for label, entry in (earlier.get("runs") or {}).items()
            if label in status and entry.get("job_id") and status[label]["state"] != "done"}
    if not jobs or not queue.poll([e["job_id"] for e in jobs.values()], force=True):
        return
    for spec in list(pending):
        entry = jobs.get(spec.label)
        if entry is None:
            continue
        job_id = entry["job_id"]
        state, _, name = queue.states.get(job_id, ("ENDED", "", ""))
        if state not in SLURM_WAITING | SLURM_RUNNING or name != spec.label:  # ended, or a recycled job id
            continue
        job = submitit.SlurmJob(folder=plan.out / "submitit", job_id=job_id,
                                tasks=list(range(spec.nodes * spec.devices)))
        pending.remove(spec)
        running[spec.label] = (job, spec, [])
        status[spec.label].update(state=queue.table_state(job_id), attempts=int(entry.get("attempts") or 1),
                                  job_id=job_id, note=queue.note(job_id), reattached=True)


class SweepStopped(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the sweep; its local runs were stopped (or, with `detach`, left running)."""


@dataclass
class _Sweep:
    """The state of a sweep in progress: the runs queued, running under this sweep, and running elsewhere (a
    live process holds the run's lock: the runs of an earlier, killed sweep) which it watches until they end."""

    plan: Plan
    plan_path: Path
    executor: str
    status: dict
    settings: dict | None
    cpu_slots: int
    free_gpus: list
    pending: list
    running: dict = field(default_factory=dict)  # label -> (job, spec, gpus)
    watched: dict = field(default_factory=dict)  # label -> spec
    queue: SlurmQueue | None = None

    def save(self) -> None:
        atomic_write_json(self.plan.out / "sweep.json",
                          {"plan": str(self.plan_path), "executor": self.executor, "runs": self.status})


def sweep(plan_path: Path | str, executor: str = "local", dry_run: bool = False, slots: int | None = None,
          slurm_settings_path: Path | str | None = None, console: Console | None = None,
          runs_per_gpu: int = 1, detach: bool = False) -> dict:
    """Run a plan; -> label -> {state, attempts, error, run_dir}. Writes OUT/sweep.json as it goes.
    `runs_per_gpu` (local executor): small runs share a GPU, at most this many on each at once. On SIGINT or
    SIGTERM the sweep stops its local runs (`detach`: leaves them running) and says which; a run that a live
    process already writes (its lock is held) is watched, never started a second time."""
    if runs_per_gpu < 1:
        raise PlanError(f"--runs-per-gpu must be at least 1, got {runs_per_gpu}")
    console = console or tables.console()
    plan = load_plan(plan_path)
    settings = slurm_settings(slurm_settings_path) if executor == "slurm" else None
    status = {s.label: {"state": "done" if run_state(s) == "done" else "queued", "attempts": 0, "error": None,
                        "run_dir": str(s.run_dir)} for s in plan.runs}
    if dry_run:
        tables.print_table(console, *_table(plan, status, title=f"plan {plan.name} (dry run: nothing started)"))
        if executor == "slurm" and plan.runs:
            console.print(render_sbatch(plan.runs[0], settings, plan.out / "submitit"))
        return status
    state = _start_state(plan, Path(plan_path), executor, status, settings, slots, runs_per_gpu)
    if executor != "slurm":  # a cluster's nodes may see other files than this machine: the runs check there
        check_data([s for s in state.pending if status[s.label]["state"] == "queued"])
    with _stop_signals(), _display(console, plan, status) as display:
        try:
            _drive(state, display)
        except KeyboardInterrupt:
            _stop(state, console, detach or executor == "slurm")
            raise SweepStopped() from None
        display.update(status)
    state.save()
    failed = [k for k, v in status.items() if v["state"] == "failed"]
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed[/red]: " + ", ".join(failed)
                      + f" (logs under {plan.out / 'submitit'}; re-run the plan to retry them)")
    return status


def _start_state(plan: Plan, plan_path: Path, executor: str, status: dict, settings, slots, runs_per_gpu) -> _Sweep:
    import torch

    # One entry per free place on a GPU, round-robin, so that runs spread over the GPUs before they share one.
    free_gpus = list(range(torch.cuda.device_count())) * runs_per_gpu if executor == "local" else []
    state = _Sweep(plan, plan_path, executor, status, settings, slots or 1, free_gpus,
                   [s for s in plan.runs if status[s.label]["state"] == "queued"],
                   queue=SlurmQueue() if executor == "slurm" else None)
    for spec in list(state.pending):  # runs of an earlier sweep that are still training (their lock is held)
        holder = rundir.lock_holder(spec.run_dir)
        if holder is not None:
            _watch(state, spec, holder)
    if state.queue is not None:
        _reattach(plan, status, state.pending, state.running, state.queue)
    return state


def _watch(state: _Sweep, spec: RunSpec, holder: dict) -> None:
    state.pending.remove(spec)
    state.watched[spec.label] = spec
    state.status[spec.label].update(state="running", note=f"already running (pid {holder.get('pid', '?')} on "
                                                          f"{holder.get('host', '?')}): watched, not restarted")


def _drive(state: _Sweep, display) -> None:
    """Start what fits, follow what runs, until every run has ended."""
    while state.pending or state.running or state.watched:
        for spec in list(state.pending):
            if _submit(state, spec):
                display.update(state.status)
        if state.pending and not state.running and not state.watched:  # nothing will ever free a place
            spec = state.pending[0]
            raise PlanError(f"{spec.label} asks for {spec.devices} GPUs per node and this machine has "
                            f"{len(set(state.free_gpus))}: lower its devices (a plan's `devices`, reproduce's "
                            "--devices), or run it with --executor slurm")
        _follow_watched(state)
        if state.queue is not None and state.running and state.queue.poll(
                [job.job_id for job, _, _ in state.running.values()]):
            for job, spec, _ in state.running.values():  # the live table shows what the real queue says
                state.status[spec.label].update(state=state.queue.table_state(job.job_id),
                                                note=state.queue.note(job.job_id))
        for job, spec, _ in list(state.running.values()):
            if state.queue.ended(job) if state.queue is not None else job.done():
                _finish(job, spec, state.status, state.plan, state.pending, state.running, state.free_gpus,
                        state.queue)
        display.update(state.status)
        state.save()
        if state.running or state.watched:
            display.tick(state.status)
            time.sleep(1.0)


def _submit(state: _Sweep, spec: RunSpec) -> bool:
    """Start `spec` if a place is free; -> whether it started (or turned out to run elsewhere already)."""
    import torch

    holder = rundir.lock_holder(spec.run_dir)
    if holder is not None:  # another process took the run meanwhile: never a second writer
        _watch(state, spec, holder)
        return True
    gpus = []
    if state.executor == "local":
        need = spec.devices if state.free_gpus or torch.cuda.is_available() else 0
        gpus = _least_loaded(state.free_gpus, need)  # a multi-GPU run takes `need` distinct GPUs
        if (need and gpus is None) or (not need and len(state.running) >= state.cpu_slots):
            return False
        for gpu in gpus:
            state.free_gpus.remove(gpu)
    job = _executor(state.executor, state.plan.out / "submitit", spec, state.settings, gpus).submit(
        TrainJob(spec, group=f"sweep-{state.plan.name}"))
    state.pending.remove(spec)
    state.running[spec.label] = (job, spec, gpus)
    state.status[spec.label].update(state="running" if state.queue is None else "queued", job_id=str(job.job_id),
                                    attempts=state.status[spec.label]["attempts"] + 1)
    if state.queue is not None:  # on record at once: a sweep re-run meanwhile must not submit it again
        state.save()
        state.queue.poll([str(job.job_id)], force=True)
    if state.executor == "debug":  # DebugExecutor runs the job when asked for its result
        _finish(job, spec, state.status, state.plan, state.pending, state.running, state.free_gpus)
    return True


def _follow_watched(state: _Sweep) -> None:
    """A watched run whose writer has ended: done if it was scored, else queued to resume."""
    for label, spec in list(state.watched.items()):
        if rundir.lock_holder(spec.run_dir) is not None:
            continue
        del state.watched[label]
        entry = state.status[label]
        entry.pop("note", None)
        if run_state(spec) == "done":
            entry["state"] = "done"
        else:
            entry["state"] = "queued"
            state.pending.append(spec)


@contextlib.contextmanager
def _stop_signals():
    """SIGTERM ends the sweep as Ctrl-C (SIGINT) does, so that both stop (or leave) its runs the same way."""
    def on_term(signum, frame):
        raise KeyboardInterrupt()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(state: _Sweep, console: Console, detach: bool) -> None:
    """Stop the runs this sweep started (local executor), or leave them (detach; SLURM jobs are the cluster's),
    and say which; a re-run of the plan resumes the stopped ones and watches the ones left running."""
    labels = sorted(state.running)
    if detach or not labels:
        if labels:
            console.print(f"sweep {state.plan.name} stopped; left running: {', '.join(labels)} (a re-run of the "
                          "plan watches them and resumes what is unfinished)", highlight=False, soft_wrap=True)
        state.save()
        return
    for job, _, _ in state.running.values():
        with contextlib.suppress(Exception):
            job.cancel(check=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(not job.done() for job, _, _ in state.running.values()):
        time.sleep(0.5)
    for label in labels:
        state.status[label].update(state="queued", note="stopped with the sweep; a re-run resumes it")
    state.save()
    console.print(f"sweep {state.plan.name} stopped; stopped its runs: {', '.join(labels)} (re-run the plan to "
                  "resume them)", highlight=False, soft_wrap=True)


def check_data(runs: list[RunSpec]) -> None:
    """Before any run starts: each distinct data setting of `runs` is checked once (Task.check_data), so that
    missing data gives one error naming the file, not the same failure from every run and its retries after
    each has loaded torch. A run's own `env` (e.g. ATTNREPRO_DATA) applies while its data is checked."""
    seen = set()
    for spec in runs:
        key = (spec.repro.task, repr(spec.cfg.data), tuple(sorted(spec.env.items())))
        if key in seen:
            continue
        seen.add(key)
        with mock.patch.dict(os.environ, spec.env):
            spec.task.check_data(spec.cfg)


def _least_loaded(free_gpus: list[int], need: int) -> list[int] | None:
    """`need` distinct GPUs with the most free places (ties: the lowest index), or None if fewer are free."""
    distinct = sorted(set(free_gpus), key=lambda gpu: (-free_gpus.count(gpu), gpu))
    return distinct[:need] if len(distinct) >= need else None


def _finish(job, spec, status, plan, pending, running, free_gpus, queue: SlurmQueue | None = None) -> None:
    _, _, gpus = running.pop(spec.label)
    free_gpus.extend(gpus)
    entry = status[spec.label]
    entry.pop("note", None)
    try:
        _result(job, queue)
        entry.update(state="done", error=None)
    except Exception as err:  # a failed run is reported, retried, and never stops the others
        entry["error"] = _error_line(str(err)) or type(err).__name__
        if entry["attempts"] <= plan.retries:
            entry["state"] = "queued"
            pending.append(spec)
        else:
            entry["state"] = "failed"


def _error_line(text: str) -> str:
    """The exception line of a failed job's report (submitit appends the paths of its logs after it)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt|Exit)\w*\b", line)]
    return (errors or lines or [""])[-1][:300]


class _LiveTable:
    """In a terminal: the plan's table, redrawn in place (rich's Live)."""

    def __init__(self, console: Console, plan: Plan, status: dict):
        self.plan = plan
        self.live = Live(tables.live_table(*_table(plan, status)), console=console, refresh_per_second=2,
                         transient=False)

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

    def update(self, status: dict) -> None:
        self.live.update(tables.live_table(*_table(self.plan, status)))

    def tick(self, status: dict) -> None:
        self.update(status)  # the progress column reads the runs' progress files


class _Lines:
    """In a log or a pipe (where a redrawn table prints nothing until the end): one plain line per change of a
    run's state, and every `every_s` seconds a summary with each running run's progress."""

    def __init__(self, console: Console, plan: Plan, status: dict, every_s: float = 60.0):
        self.console, self.plan, self.every_s = console, plan, every_s
        self.seen = {label: (v["state"], v["attempts"]) for label, v in status.items()}
        self.status_at_start = {label: dict(v) for label, v in status.items()}
        self.last_summary = time.monotonic()

    def __enter__(self):
        self.console.print(f"sweep {self.plan.name}: {_counts_text(self.seen_status())}", highlight=False)
        for label, v in self.status_at_start.items():
            if v.get("note"):
                self.console.print(f"{label}: {v['state']} ({v['note']})", highlight=False, soft_wrap=True)
        return self

    def seen_status(self) -> dict:
        return {label: {"state": state} for label, (state, _) in self.seen.items()}

    def __exit__(self, *exc):
        if exc[0] is None:
            self.console.print(f"sweep {self.plan.name}: {_counts_text(self.seen_status())}", highlight=False)
        return False

    def update(self, status: dict) -> None:
        for label, v in status.items():
            now = (v["state"], v["attempts"])
            if self.seen.get(label) != now:
                self.seen[label] = now
                error = f": {v['error']}" if v.get("error") and v["state"] in ("queued", "failed") else ""
                attempt = f" (attempt {v['attempts']})" if v["state"] == "running" and v["attempts"] else ""
                note = f" ({v['note']})" if v.get("note") else ""
                self.console.print(f"{time.strftime('%H:%M:%S')} {label}: {v['state']}{attempt}{note}{error}",
                                   highlight=False, soft_wrap=True)

    def tick(self, status: dict) -> None:
        self.update(status)
        if time.monotonic() - self.last_summary < self.every_s:
            return
        self.last_summary = time.monotonic()
        running = [f"{label} {_progress_text(v['run_dir'])}" for label, v in status.items()
                   if v["state"] == "running"]
        self.console.print(f"{time.strftime('%H:%M:%S')} sweep {self.plan.name}: {_counts_text(status)}"
                           + (f"; {'; '.join(running)}" if running else ""), highlight=False, soft_wrap=True)


def _display(console: Console, plan: Plan, status: dict):
    return _LiveTable(console, plan, status) if console.is_terminal else _Lines(console, plan, status)


def _counts_text(status: dict) -> str:
    counts = {s: sum(v["state"] == s for v in status.values()) for s in ("queued", "running", "done", "failed")}
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def _progress_text(run_dir: str) -> str:
    """'step 350/700, about 2.1 min left' from the run's progress file ('' before its first step)."""
    from .progress import minutes, read_progress

    progress = read_progress(run_dir)
    if not progress:
        return ""
    total = f"/{progress['total']}" if progress.get("total") else ""
    return f"step {progress['step']}{total}, about {minutes(progress.get('eta_s'))} left"


def _table(plan: Plan, status: dict, title: str | None = None) -> tuple[str, list[tables.Col], list[list[str]]]:
    """The plan's table as harness/tables takes it (title, columns, rows): printed once, or redrawn by Live."""
    columns = [tables.Col("run"), tables.Col("state"), tables.Col("attempts", "number"), tables.Col("progress", "text"),
               tables.Col("note", "text")]
    colors = {"done": "green", "failed": "red", "running": "yellow", "queued": "dim"}
    rows = []
    for label, v in status.items():
        note = v.get("error") or v.get("note") or ""  # note: the SLURM queue's word on the job
        progress = _progress_text(v["run_dir"]) if v["state"] == "running" else ""
        rows.append([escape(label), f"[{colors[v['state']]}]{v['state']}[/]", str(v["attempts"]), progress,
                     escape(note)])
    return title or f"sweep {plan.name}: {_counts_text(status)}", columns, rows
