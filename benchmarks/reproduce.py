"""The main job as a benchmark: `attnrepro reproduce` (what `make reproduce` runs), timed, with its tables recorded.

Runs `attnrepro reproduce --preset PRESET --out OUT/runs` in a child process (as a user's shell would), optionally
with N busy-loop processes beside it for the whole run (`--load N`: a machine whose owner is doing other work),
then writes OUT/result.json: every run's headline scores, steps, what stopped it and its minutes, the wall time of
the whole job, the machine and the commit. With `--compare OTHER/result.json` it also says whether the scores and
step counts are identical to another record's (the presets stop on steps, so load must not change them).

    python benchmarks/reproduce.py --out benchmarks/results/reproduce-quick-idle
    python benchmarks/reproduce.py --load 2 --out benchmarks/results/reproduce-quick-loaded \\
        --compare benchmarks/results/reproduce-quick-idle/result.json

Finished runs under OUT/runs are reused (as `reproduce` does), so the wall time is that of the runs it trained.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from harness.benchmark import provenance
from harness.tables import Col, print_table
from reproductions import registry, tasks
from reproductions.common import rundir
from reproductions.common.data.sources import MIRROR_ENV, cache_root, data_root
from reproductions.common.io import atomic_write_json


def _spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def run_reproduce(preset: str, out: Path, load: int, extra: list[str]) -> tuple[float, int]:
    """(wall seconds, exit status) of `attnrepro reproduce` with `load` busy loops beside it."""
    spinners = [multiprocessing.Process(target=_spin, args=(time.time() + 24 * 3600,), daemon=True)
                for _ in range(load)]
    for spinner in spinners:
        spinner.start()
    start = time.perf_counter()
    try:
        status = subprocess.call([sys.executable, "-m", "harness.cli", "reproduce", "--preset", preset,
                                  "--out", str(out), *extra])
    finally:
        for spinner in spinners:
            spinner.terminate()
    return time.perf_counter() - start, status


def collect(runs_dir: Path) -> dict:
    """label -> the run's model, preset, seed, headline scores, steps, stopped_by and minutes."""
    rows = {}
    for provenance_file in sorted(runs_dir.glob("*/provenance.json")):
        run_dir = provenance_file.parent
        run = rundir.RunDir(run_dir)
        facts, metrics = run.provenance, run.metrics()
        repro = registry.get(facts["reproduction"])
        task = tasks.get(repro.task)
        keys = [c.key for c in task.columns]
        training = metrics.get("training", {})
        rows[run_dir.name] = {
            "reproduction": repro.name, "model": repro.title, "role": repro.role, "preset": facts["preset"],
            "seed": facts["seed"],
            "scores": {split: {k: s.get(k) for k in keys} for split, s in metrics.get("splits", {}).items()},
            "headline": task.headline,
            "steps": training.get("steps"), "stopped_by": training.get("stopped_by"),
            "target_tokens": training.get("target_tokens"),
            "minutes": round(training.get("wall_time_s", 0) / 60, 2),
            "target_tokens_per_s": training.get("target_tokens_per_s"), "precision": training.get("precision"),
        }
    return rows


def copy_figures(runs_dir: Path, out: Path) -> list[str]:
    """The translation models' first alignment map and the report's BLEU-by-length figure, beside the record
    (caption attention maps overlay Flickr8k photos: data, not copied)."""
    copied = []
    for run_dir in sorted(runs_dir.glob("*")):
        first = run_dir / "figures" / "attention_test_2016_flickr_1.png"
        if first.is_file():
            name = json.loads((run_dir / "provenance.json").read_text())["reproduction"]
            shutil.copyfile(first, out / f"alignment_{name}.png")
            copied.append(str(out / f"alignment_{name}.png"))
    by_length = runs_dir / "report" / "figures" / "bleu_by_length_test_2016_flickr.png"
    if by_length.is_file():
        shutil.copyfile(by_length, out / by_length.name)
        copied.append(str(out / by_length.name))
    return copied


def data_source() -> dict:
    """Where the job's data comes from: a data folder ($ATTNREPRO_DATA), or downloads (through $ATTNREPRO_MIRROR,
    or the public URLs) into a cache that may start empty, as on a user's first run."""
    cache = cache_root()
    return {"data_folder": data_root() is not None, "mirror": bool(os.environ.get(MIRROR_ENV)),
            "cache_empty_at_start": not (cache.is_dir() and any(cache.iterdir()))}


def compare(rows: dict, other: dict) -> dict:
    """Whether the scores and work of every run this record shares with another are identical (a job run with
    `--only` compares its runs alone; `compared` names them)."""
    keys = ("scores", "steps", "stopped_by", "target_tokens")
    common = sorted(set(rows) & set(other))
    differ = [f"{label}: {k}" for label in common for k in keys if rows[label].get(k) != other[label].get(k)]
    return {"identical": bool(common) and not differ, "compared": common, "differences": differ}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--out", type=Path, required=True, help="folder for the record (runs go to OUT/runs)")
    parser.add_argument("--load", type=int, default=0, metavar="N", help="busy-loop processes beside the job")
    parser.add_argument("--compare", type=Path, metavar="RESULT.json", help="another record of the same job")
    parser.add_argument("extra", nargs="*", help="more options for `attnrepro reproduce` (after --)")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    data = data_source()
    wall, status = run_reproduce(args.preset, args.out / "runs", args.load, args.extra)
    rows = collect(args.out / "runs")
    result = {"benchmark": "reproduce", "preset": args.preset, "command": f"attnrepro reproduce --preset {args.preset}",
              "load_processes": args.load, "exit_status": status, "wall_time_s": round(wall, 1),
              "data_source": data, **provenance(load_before), "runs": rows}
    result["command"] = f"attnrepro reproduce --preset {args.preset} " + " ".join(args.extra)
    result["figures"] = copy_figures(args.out / "runs", args.out)
    if args.compare:
        other = json.loads(args.compare.read_text())
        result["compared_with"] = {"record": str(args.compare), **compare(rows, other["runs"])}
    atomic_write_json(args.out / "result.json", result)
    console = Console()
    columns = [Col("run"), Col("headline", "number"), Col("steps", "number"), Col("stopped by"),
               Col("minutes", "number")]
    table = [[label, "; ".join(f"{split} {r['scores'][split][r['headline']]:.2f}" for split in r["scores"]),
              str(r["steps"]), str(r["stopped_by"]), f"{r['minutes']:.1f}"] for label, r in rows.items()]
    print_table(console, f"reproduce --preset {args.preset}, load {args.load}: {wall / 60:.1f} min", columns, table)
    if args.compare:
        same = result["compared_with"]
        console.print(f"identical to {args.compare}: {same['identical']}"
                      + ("" if same["identical"] else f" ({'; '.join(same['differences'])})"))
    console.print(f"results: {args.out / 'result.json'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
