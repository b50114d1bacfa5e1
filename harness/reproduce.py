"""`attnrepro reproduce`: the shipped plan. Every registered paper against its fixed-vector baseline at one
preset and seed(s), run through `attnrepro sweep` (any executor), then the comparison tables and the full
report (`attnrepro report`). Finished runs are reused and interrupted ones resumed, so an interrupted
reproduce picks up where it was.

A paper model is paired only with a baseline run on the same dataset and language pair: the baseline's preset
of the same name when its data match, else another preset of the same scale that does (e.g. an En-De paper
preset of the baseline for the En-De Transformer); when none does, the paper model runs without a baseline and
the plan says why. `--dry-run` prints these pairs and runs nothing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console

from reproductions import paper_results, registry, tasks
from reproductions.common import rundir
from reproductions.common.io import atomic_write_text

from .tables import Col, print_table


@dataclass(frozen=True)
class Pairing:
    paper: str
    preset: str
    data: str  # "dataset pair" both runs are trained and scored on
    baseline: str | None  # None: no baseline preset on the same data (see `why`)
    baseline_preset: str | None
    why: str = ""


def matched_runs(only: list[str] | None = None) -> list[tuple[str, str]]:
    """(paper, baseline) name pairs, in registry order."""
    pairs = [(p.name, p.baseline) for p in registry.papers() if p.baseline]
    if only:
        wanted = {registry.get(n).name for n in only}
        pairs = [p for p in pairs if p[0] in wanted]
    return pairs


def preset_data(name: str, preset: str, overrides: list[str] | tuple = ()) -> tuple[str, str | None]:
    """(dataset, pair) a preset trains and scores on, after the overrides."""
    cfg = registry.get(name).load_config(preset, list(overrides))
    return paper_results.run_data(dataclasses.asdict(cfg.data))


def plan_pairs(preset: str, only: list[str] | None = None, overrides: list[str] | tuple = ()) -> list[Pairing]:
    """Each paper model that has `preset`, with the baseline preset trained on the same dataset and pair."""
    out = []
    for paper, baseline in matched_runs(only):
        if preset not in registry.get(paper).presets():
            continue
        data = preset_data(paper, preset, overrides)
        where = " ".join(x for x in data if x)
        presets = registry.get(baseline).presets()
        # the same preset first, then (at paper scale) the baseline's other paper presets
        candidates = [preset] if preset in presets else []
        if preset.startswith("paper"):
            candidates += [p for p in presets if p.startswith("paper") and p != preset]
        match = next((p for p in candidates if preset_data(baseline, p, overrides) == data), None)
        if match is None:
            tried = ", ".join(candidates) or "none"
            out.append(Pairing(paper, preset, where, None, None,
                               f"no {baseline} preset trains on {where} (tried: {tried})"))
        else:
            out.append(Pairing(paper, preset, where, baseline, match))
    return out


def write_plan(pairs: list[Pairing], preset: str, out: Path, seeds: list[int], overrides: list[str]) -> Path:
    """OUT/plan.yaml: the plan `reproduce` runs, kept beside the runs so it can be re-run or edited."""
    runs = dict.fromkeys([(p.paper, p.preset) for p in pairs]
                         + [(p.baseline, p.baseline_preset) for p in pairs if p.baseline])
    plan = {"name": f"reproduce-{preset}", "out": str(out), "retries": 1,
            "runs": [{"reproductions": [name], "presets": [run_preset], "seeds": seeds, "overrides": list(overrides)}
                     for name, run_preset in runs]}
    path = out / "plan.yaml"
    atomic_write_text(path, yaml.safe_dump(plan, sort_keys=False))
    return path


def pairs_table(pairs: list[Pairing], preset: str, console: Console) -> None:
    columns = [Col("paper model"), Col("preset"), Col("data"), Col("baseline", "text"), Col("baseline preset")]
    rows = [[p.paper, p.preset, p.data, p.baseline or f"none: {p.why}", p.baseline_preset or ""] for p in pairs]
    print_table(console, f"reproduce --preset {preset}: each paper model and its baseline on the same data",
                columns, rows)


def reproduce(preset: str = "quick", out: Path | str | None = None, seed: int = 1, wandb: str | None = None,
              only: list[str] | None = None, overrides: list[str] | tuple = (), console: Console | None = None,
              executor: str = "local", seeds: int = 1, slots: int | None = None, report: bool = True,
              dry_run: bool = False, runs_per_gpu: int = 1) -> dict:
    from .report import build_report
    from .sweep import load_plan, sweep

    console = console or Console()
    pairs = plan_pairs(preset, only, overrides)
    if dry_run:
        pairs_table(pairs, preset, console)
        return {"pairs": [dataclasses.asdict(p) for p in pairs]}
    out = Path(out or f"runs/reproduce-{preset}")
    if wandb:
        import os

        os.environ["WANDB_MODE"] = wandb
    plan_path = write_plan(pairs, preset, out, list(range(seed, seed + seeds)), list(overrides))
    sweep(plan_path, executor=executor, slots=slots, console=console, runs_per_gpu=runs_per_gpu)
    results = {}
    for spec in load_plan(plan_path).runs:
        if spec.seed == seed and rundir.read_metrics(spec.run_dir).get("splits"):
            results[(spec.name, spec.preset)] = rundir.read_metrics(spec.run_dir)
    for task in dict.fromkeys(registry.get(p.paper).task for p in pairs if (p.paper, p.preset) in results):
        comparison_table(results, pairs, preset, task, console)
    if report and results:
        report_dir = out / "report"
        build_report([out], report_dir)
        console.print(f"report: {report_dir / 'report.md'} and {report_dir / 'report.html'}")
    return results


def comparison_table(results: dict, pairs: list[Pairing], preset: str, task: str, console: Console) -> None:
    """One row per (model, test split): the headline scores, and for a paper its gain over its baseline, which
    was trained and scored on the same dataset, pair and split (`plan_pairs`). Names and numbers are never cut:
    in a narrow terminal the descriptive columns and the non-headline metrics are left out instead."""
    task_ = tasks.get(task)
    lead_name, lead = task_.headline_label, task_.headline
    columns = [Col("model"), Col("role", optional=True), Col("preset"), Col("data", optional=True), Col("split")]
    columns += [Col(c.label, "number", optional=c.key != lead) for c in task_.columns]
    columns += [Col(f"Δ {lead_name} vs baseline", "number"), Col("train time", "number", optional=True)]
    rows = []
    for pairing in pairs:
        if registry.get(pairing.paper).task != task or (pairing.paper, pairing.preset) not in results:
            continue
        base_key = (pairing.baseline, pairing.baseline_preset)
        base_splits = results.get(base_key, {}).get("splits", {}) if pairing.baseline else {}
        for name, run_preset in ((pairing.paper, pairing.preset), base_key):
            if (name, run_preset) not in results:
                continue
            repro, metrics = registry.get(name), results[(name, run_preset)]
            wall = metrics.get("training", {}).get("wall_time_s")
            for split, s in metrics.get("splits", {}).items():
                delta = ""
                if name == pairing.paper and split in base_splits:
                    delta = f"{s[lead] - base_splits[split][lead]:+.2f}"
                rows.append([f"{repro.title} ({name})", repro.role, run_preset, pairing.data, split,
                             *(f"{s[c.key]:.2f}" if isinstance(s.get(c.key), (int, float)) else "—"
                               for c in task_.columns),
                             delta, f"{wall:.0f} s" if wall is not None else ""])
    print_table(console, f"{task}: attention vs fixed vector ({preset} preset; {task_.metric_title})", columns, rows)
