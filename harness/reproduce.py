"""`attnrepro reproduce`: every registered paper against its fixed-vector baseline, same preset and seed,
then one comparison table. Finished runs are reused, so an interrupted reproduce picks up where it was."""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from reproductions import registry

from . import rundir


def matched_runs(only: list[str] | None = None) -> list[tuple[str, str]]:
    """(paper, baseline) name pairs, in registry order."""
    pairs = [(p.name, p.baseline) for p in registry.papers() if p.baseline]
    if only:
        wanted = {registry.get(n).name for n in only}
        pairs = [p for p in pairs if p[0] in wanted]
    return pairs


def reproduce(preset: str = "quick", out: Path | str | None = None, seed: int = 1, wandb: str | None = None,
              only: list[str] | None = None, overrides: list[str] | tuple = (), console: Console | None = None) -> dict:
    from .train import train

    console = console or Console()
    out = Path(out or f"runs/reproduce-{preset}")
    results = {}
    for paper, baseline in matched_runs(only):
        for name in (paper, baseline):
            run_dir = out / f"{name}-seed{seed}"
            if not rundir.read_metrics(run_dir).get("splits"):
                if run_dir.exists():  # an earlier attempt died before scoring: start it again
                    shutil.rmtree(run_dir)
                console.rule(f"{name} ({preset})")
                train(name, preset, overrides=overrides, seed=seed, run_dir=run_dir, wandb=wandb,
                      group=f"reproduce-{preset}")
            results[name] = rundir.read_metrics(run_dir)
    console.print(comparison_table(results, preset))
    return results


def comparison_table(results: dict, preset: str) -> Table:
    table = Table(title=f"attention vs fixed vector ({preset} preset; sacreBLEU on each test split)")
    for column in ("model", "role", "split", "BLEU", "chrF", "Δ BLEU vs baseline", "train time"):
        table.add_column(column, justify="left" if column in ("model", "role", "split") else "right")
    for paper, baseline in matched_runs():
        if paper not in results or baseline not in results:
            continue
        base_splits = results[baseline].get("splits", {})
        for name in (paper, baseline):
            repro, metrics = registry.get(name), results[name]
            wall = metrics.get("training", {}).get("wall_time_s")
            for split, s in metrics.get("splits", {}).items():
                delta = ""
                if name == paper and split in base_splits:
                    delta = f"{s['bleu'] - base_splits[split]['bleu']:+.2f}"
                table.add_row(f"{repro.title} ({name})", repro.role, split, f"{s['bleu']:.2f}", f"{s['chrf']:.2f}",
                              delta, f"{wall:.0f} s" if wall is not None else "")
    return table
