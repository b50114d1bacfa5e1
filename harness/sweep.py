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
        overrides: [train.max_minutes=5]
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

import itertools
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from reproductions import registry
from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_json

from . import rundir

PLAN_KEYS = {"name", "out", "retries", "runs"}
GROUP_KEYS = {"reproductions", "presets", "seeds", "pairs", "overrides", "devices", "nodes", "env"}
SLURM_SETTINGS = Path("~/.config/attnrepro/slurm.yaml")
SLURM_KEYS = {"partition", "account", "qos", "constraint", "time_min", "cpus_per_task", "mem_gb", "setup",
              "additional"}


class PlanError(AttnreproError):
    pass


@dataclass
class RunSpec:
    name: str
    preset: str
    seed: int
    pair: str | None
    overrides: list[str]
    devices: int
    nodes: int
    run_dir: Path
    env: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.run_dir.name


@dataclass
class Plan:
    name: str
    out: Path
    retries: int
    runs: list[RunSpec]


def _as_list(value, key: str, where: str) -> list:
    if isinstance(value, list):
        return value
    if value is None:
        raise PlanError(f"{where}: '{key}' is empty; give a value or a list")
    return [value]


def load_plan(path: Path | str) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"plan {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PlanError(f"plan {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict) or "runs" not in data:
        raise PlanError(f"plan {path} must be a mapping with a 'runs' list (see `attnrepro sweep --help`)")
    unknown = set(data) - PLAN_KEYS
    if unknown:
        raise PlanError(f"plan {path}: unknown key(s) {sorted(unknown)}; known: {sorted(PLAN_KEYS)}")
    name = str(data.get("name") or path.stem)
    out = Path(data.get("out") or Path("runs") / "sweeps" / name)
    retries = data.get("retries", 1)
    if not isinstance(retries, int) or retries < 0:
        raise PlanError(f"plan {path}: 'retries' must be a whole number >= 0, got {retries!r}")
    specs: list[RunSpec] = []
    for i, group in enumerate(_as_list(data["runs"], "runs", str(path))):
        where = f"plan {path}, runs[{i}]"
        if not isinstance(group, dict):
            raise PlanError(f"{where} must be a mapping")
        unknown = set(group) - GROUP_KEYS
        if unknown:
            raise PlanError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(GROUP_KEYS)}")
        names = [registry.get(n).name for n in _as_list(group.get("reproductions"), "reproductions", where)]
        presets = _as_list(group.get("presets", ["quick"]), "presets", where)
        seeds = _as_list(group.get("seeds", [1]), "seeds", where)
        pairs = _as_list(group.get("pairs", [None]), "pairs", where)
        overrides = [str(o) for o in group.get("overrides", [])]
        devices, nodes = int(group.get("devices", 1)), int(group.get("nodes", 1))
        env = {str(k): str(v) for k, v in (group.get("env") or {}).items()}
        for repro_name, preset, seed, pair in itertools.product(names, presets, seeds, pairs):
            repro = registry.get(repro_name)
            pair = pair if repro.task == "translation" else None
            repro.load_config(preset, overrides, pair=pair)  # a bad preset or override fails before anything runs
            label = f"{repro_name}-{preset}" + (f"-{pair}" if pair else "") + f"-seed{seed}"
            specs.append(RunSpec(repro_name, preset, int(seed), pair, overrides, devices, nodes, out / label, env))
    labels = [s.label for s in specs]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise PlanError(f"plan {path} names the same run twice: {', '.join(duplicates)}")
    return Plan(name, out, retries, specs)


def run_state(spec: RunSpec) -> str:
    """done (scored), partial (has a checkpoint to resume from), or new."""
    if rundir.read_metrics(spec.run_dir).get("splits"):
        return "done"
    if any((spec.run_dir / "checkpoints" / n).is_file() for n in ("resume.ckpt", "last.ckpt")):
        return "partial"
    return "new"


class TrainJob:
    """What a submitit job runs: train a run, or resume it when it has a checkpoint. Checkpointable: on
    preemption or timeout SLURM requeues the same job, which then resumes."""

    def __init__(self, spec: RunSpec, group: str):
        self.spec, self.group = spec, group

    def __call__(self) -> dict:
        from .train import resume, train

        spec = self.spec
        os.environ.update(spec.env)
        state = run_state(spec)
        if state == "partial":
            resume(spec.run_dir, devices=spec.devices, nodes=spec.nodes, group=self.group)
        elif state == "new":
            if spec.run_dir.exists() and rundir.is_rank_zero():  # an attempt that died before its first checkpoint
                shutil.rmtree(spec.run_dir)
            train(spec.name, spec.preset, pair=spec.pair, overrides=spec.overrides, seed=spec.seed,
                  run_dir=spec.run_dir, devices=spec.devices, nodes=spec.nodes, group=self.group)
        return rundir.read_metrics(spec.run_dir)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self)  # the requeued job resumes from the run's checkpoint


def slurm_settings(path: Path | str | None) -> dict:
    path = Path(path or os.environ.get("ATTNREPRO_SLURM_SETTINGS") or SLURM_SETTINGS).expanduser()
    if not path.is_file():
        raise PlanError(f"SLURM settings file {path} not found; create it with e.g. 'partition: gpu', "
                        "'account: myproject', 'time_min: 1440' (or pass --slurm-settings FILE)")
    settings = yaml.safe_load(path.read_text()) or {}
    unknown = set(settings) - SLURM_KEYS
    if unknown:
        raise PlanError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(SLURM_KEYS)}")
    return settings


def slurm_parameters(spec: RunSpec, settings: dict) -> dict:
    """submitit SLURM parameters of one run: one task per GPU, on `nodes` nodes (Lightning reads SLURM's
    environment for DDP), USR2 before the time limit so that submitit checkpoints and requeues."""
    params = {
        "job_name": spec.label,
        "nodes": spec.nodes,
        "ntasks_per_node": spec.devices,
        "gpus_per_node": spec.devices,
        "time": int(settings.get("time_min", 24 * 60)),
        "signal_delay_s": 120,
        "additional_parameters": {"requeue": True, **(settings.get("additional") or {})},
    }
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


def sweep(plan_path: Path | str, executor: str = "local", dry_run: bool = False, slots: int | None = None,
          slurm_settings_path: Path | str | None = None, console: Console | None = None) -> dict:
    """Run a plan; -> label -> {state, attempts, error, run_dir}. Writes OUT/sweep.json as it goes."""
    console = console or Console()
    plan = load_plan(plan_path)
    settings = slurm_settings(slurm_settings_path) if executor == "slurm" else None
    status = {s.label: {"state": "done" if run_state(s) == "done" else "queued", "attempts": 0, "error": None,
                        "run_dir": str(s.run_dir)} for s in plan.runs}
    if dry_run:
        console.print(_table(plan, status, title=f"plan {plan.name} (dry run: nothing started)"))
        if executor == "slurm" and plan.runs:
            console.print(render_sbatch(plan.runs[0], settings, plan.out / "submitit"))
        return status

    import torch

    free_gpus = list(range(torch.cuda.device_count())) if executor == "local" else []
    cpu_slots = slots or 1
    pending = [s for s in plan.runs if status[s.label]["state"] == "queued"]
    running: dict[str, tuple] = {}  # label -> (job, spec, gpus)
    with Live(_table(plan, status), console=console, refresh_per_second=2, transient=False) as live:
        while pending or running:
            for spec in list(pending):  # start what fits
                if executor == "local":
                    need = spec.devices if free_gpus or torch.cuda.is_available() else 0
                    if (need and len(free_gpus) < need) or (not need and len(running) >= cpu_slots):
                        continue
                    gpus = [free_gpus.pop(0) for _ in range(need)]
                else:
                    gpus = []
                job = _executor(executor, plan.out / "submitit", spec, settings, gpus).submit(
                    TrainJob(spec, group=f"sweep-{plan.name}"))
                pending.remove(spec)
                running[spec.label] = (job, spec, gpus)
                status[spec.label].update(state="running", attempts=status[spec.label]["attempts"] + 1,
                                          job_id=str(job.job_id))
                if executor == "debug":  # DebugExecutor runs the job when asked for its result
                    _finish(job, spec, status, plan, pending, running, free_gpus)
                live.update(_table(plan, status))
            for job, spec, _ in list(running.values()):
                if job.done():
                    _finish(job, spec, status, plan, pending, running, free_gpus)
                    live.update(_table(plan, status))
            atomic_write_json(plan.out / "sweep.json", {"plan": str(plan_path), "executor": executor, "runs": status})
            if running:
                time.sleep(1.0)
        live.update(_table(plan, status))
    atomic_write_json(plan.out / "sweep.json", {"plan": str(plan_path), "executor": executor, "runs": status})
    failed = [k for k, v in status.items() if v["state"] == "failed"]
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed[/red]: " + ", ".join(failed)
                      + f" (logs under {plan.out / 'submitit'}; re-run the plan to retry them)")
    return status


def _finish(job, spec, status, plan, pending, running, free_gpus) -> None:
    _, _, gpus = running.pop(spec.label)
    free_gpus.extend(gpus)
    entry = status[spec.label]
    try:
        job.result()
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


def _table(plan: Plan, status: dict, title: str | None = None) -> Table:
    counts = {s: sum(v["state"] == s for v in status.values()) for s in ("queued", "running", "done", "failed")}
    table = Table(title=title or f"sweep {plan.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for column in ("run", "state", "attempts", "note"):
        table.add_column(column)
    colors = {"done": "green", "failed": "red", "running": "yellow", "queued": "dim"}
    for label, v in status.items():
        table.add_row(label, f"[{colors[v['state']]}]{v['state']}[/]", str(v["attempts"]), v.get("error") or "")
    return table
