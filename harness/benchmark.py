"""What every benchmark script shares: train each model in turn (reusing finished runs, so an interrupted
benchmark resumes) and the provenance block of its result JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from rich.console import Console

from reproductions.common import rundir

from . import hardware
from .train import resume, train


def benchmark_parser(doc: str, models: list[str], results_help: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes. A benchmark trains in its own process, outside the CLI's main(),
    so the known third-party tips and deprecation warnings are silenced here as the CLI silences them."""
    from . import quiet_known_noise

    quiet_known_noise()
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--models", nargs="+", default=models)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every model")
    parser.add_argument("--out", type=Path, help=results_help)
    return parser


def train_or_reuse(names: list[str], preset: str, out: Path, seed: int, overrides: list[str], group: str,
                   console: Console, pair: str | None = None) -> dict:
    """name -> the run's record (run dir, commit, start, resolved config, metrics), trained one after the other."""
    runs = {}
    for name in names:
        run_dir = out / "runs" / name
        run = rundir.RunDir(run_dir)
        if run.scored():
            console.print(f"{name}: reusing the finished run in {run_dir}")
        elif run.started:  # an interrupted benchmark: its run goes on from its checkpoint
            console.rule(f"{name}: resuming {run_dir}")
            resume(run_dir, group=group)
        else:
            console.rule(f"{name} ({preset}{', ' + pair if pair else ''})")
            train(name, preset, pair=pair, overrides=overrides, seed=seed, run_dir=run_dir, group=group)
        run = rundir.RunDir(run_dir)
        runs[name] = {
            "run_dir": str(run_dir),
            "git": run.provenance["git"],
            "started": run.provenance["started"],
            "config": run.config,
            **run.metrics(),
        }
    return runs


BUDGET_MINUTES = 30.0  # the `cpu` presets' budgets are sized to train each model within this on the reference machine


def budget_minutes(runs: dict, machine: dict) -> dict:
    """Each run's training minutes and target tokens/s, and whether the budget kept within BUDGET_MINUTES: judged
    only where this machine is the reference kind (`machine` from hardware.budget_machine), else "unmeasured"."""
    reference = not hardware.compared_differences(machine)
    per_run = {name: {"minutes": round(r.get("training", {}).get("wall_time_s", 0) / 60, 1),
                      "target_tokens_per_s": r.get("training", {}).get("target_tokens_per_s"),
                      "steps": r.get("training", {}).get("steps")} for name, r in runs.items()}
    within = all(v["minutes"] <= BUDGET_MINUTES for v in per_run.values())
    return {"runs": per_run, "limit": BUDGET_MINUTES,
            "within_limit": within if reference else "unmeasured (this machine is not the reference machine: "
                                                     + "; ".join(hardware.compared_differences(machine)) + ")"}


def provenance(load_before: tuple) -> dict:
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "git": rundir.git_commit(),
        "machine": {**rundir.machine(), "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "note": "each run records its own commit and start time under runs.NAME.git / .started",
        "packages": rundir.package_versions(),
    }


def stopped_by(training: dict) -> str:
    """A table's "stopped by" cell: what ended the run, marked where the report would flag it (the time cap,
    an interruption, a loss that did not fall)."""
    from .report import run_flags

    what = str(training.get("stopped_by") or "-")
    return what + (" (check this run)" if run_flags(training) else "")
