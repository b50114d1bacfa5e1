"""`attnrepro reproduce`: the shipped plan. Every registered paper against its fixed-vector baseline at one
preset and seed(s), run through `attnrepro sweep` (any executor), then the comparison tables and the full
report (`attnrepro report`). Finished runs are reused and interrupted ones resumed, so an interrupted
reproduce picks up where it was."""

from __future__ import annotations

from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from reproductions import registry
from reproductions.common.io import atomic_write_text

from . import rundir


def matched_runs(only: list[str] | None = None) -> list[tuple[str, str]]:
    """(paper, baseline) name pairs, in registry order."""
    pairs = [(p.name, p.baseline) for p in registry.papers() if p.baseline]
    if only:
        wanted = {registry.get(n).name for n in only}
        pairs = [p for p in pairs if p[0] in wanted]
    return pairs


def write_plan(preset: str, out: Path, seeds: list[int], only: list[str] | None, overrides: list[str]) -> Path:
    """OUT/plan.yaml: the plan `reproduce` runs, kept beside the runs so it can be re-run or edited."""
    names = list(dict.fromkeys(n for pair in matched_runs(only) for n in pair))
    plan = {"name": f"reproduce-{preset}", "out": str(out), "retries": 1,
            "runs": [{"reproductions": names, "presets": [preset], "seeds": seeds, "overrides": list(overrides)}]}
    path = out / "plan.yaml"
    atomic_write_text(path, yaml.safe_dump(plan, sort_keys=False))
    return path


def reproduce(preset: str = "quick", out: Path | str | None = None, seed: int = 1, wandb: str | None = None,
              only: list[str] | None = None, overrides: list[str] | tuple = (), console: Console | None = None,
              executor: str = "local", seeds: int = 1, slots: int | None = None, report: bool = True) -> dict:
    from .report import build_report
    from .sweep import load_plan, sweep

    console = console or Console()
    out = Path(out or f"runs/reproduce-{preset}")
    if wandb:
        import os

        os.environ["WANDB_MODE"] = wandb
    plan_path = write_plan(preset, out, list(range(seed, seed + seeds)), only, list(overrides))
    sweep(plan_path, executor=executor, slots=slots, console=console)
    results = {}
    for spec in load_plan(plan_path).runs:
        if spec.seed == seed and rundir.read_metrics(spec.run_dir).get("splits"):
            results[spec.name] = rundir.read_metrics(spec.run_dir)
    for task in dict.fromkeys(registry.get(name).task for name in results):
        console.print(comparison_table(results, preset, task))
    if report and results:
        report_dir = out / "report"
        build_report([out], report_dir)
        console.print(f"report: {report_dir / 'report.md'} and {report_dir / 'report.html'}")
    return results


def comparison_table(results: dict, preset: str, task: str = "translation") -> Table:
    """One row per (model, test split): the headline scores, and for a paper its gain over its baseline."""
    if task == "captioning":
        title = f"captioning: attention vs fixed vector ({preset} preset; pycocoevalcap x100)"
        columns = [("BLEU-4", "bleu4"), ("METEOR", "meteor"), ("CIDEr-D", "cider_d")]
    else:
        title = f"translation: attention vs fixed vector ({preset} preset; sacreBLEU)"
        columns = [("BLEU", "bleu"), ("chrF", "chrf")]
    lead_name, lead = columns[-1] if task == "captioning" else columns[0]
    table = Table(title=title)
    for column in ("model", "role", "split", *(c for c, _ in columns), f"Δ {lead_name} vs baseline", "train time"):
        table.add_column(column, justify="left" if column in ("model", "role", "split") else "right")
    for paper, baseline in matched_runs():
        if paper not in results or baseline not in results or registry.get(paper).task != task:
            continue
        base_splits = results[baseline].get("splits", {})
        for name in (paper, baseline):
            repro, metrics = registry.get(name), results[name]
            wall = metrics.get("training", {}).get("wall_time_s")
            for split, s in metrics.get("splits", {}).items():
                delta = ""
                if name == paper and split in base_splits:
                    delta = f"{s[lead] - base_splits[split][lead]:+.2f}"
                table.add_row(f"{repro.title} ({name})", repro.role, split, *(f"{s[k]:.2f}" for _, k in columns),
                              delta, f"{wall:.0f} s" if wall is not None else "")
    return table
