"""What every benchmark script shares: train each model in turn (reusing finished runs, so an interrupted
benchmark resumes) and the provenance block of its result JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import yaml
from rich.console import Console

from reproductions.common import rundir

from .train import train


def benchmark_parser(doc: str, models: list[str], results_help: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes."""
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
        if rundir.read_metrics(run_dir).get("splits"):
            console.print(f"{name}: reusing the finished run in {run_dir}")
        else:
            console.rule(f"{name} ({preset}{', ' + pair if pair else ''})")
            train(name, preset, pair=pair, overrides=overrides, seed=seed, run_dir=run_dir, group=group)
        provenance = json.loads((run_dir / "provenance.json").read_text())
        runs[name] = {
            "run_dir": str(run_dir),
            "git": provenance["git"],
            "started": provenance["started"],
            "config": yaml.safe_load((run_dir / "config.yaml").read_text()),
            **rundir.read_metrics(run_dir),
        }
    return runs


def provenance(load_before: tuple) -> dict:
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "git": rundir.git_commit(),
        "machine": {**rundir.machine(), "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "note": "each run records its own commit and start time under runs.NAME.git / .started",
        "packages": rundir.package_versions(),
    }
