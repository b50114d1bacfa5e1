"""`attnrepro reproduce`: the shipped plan. Every registered paper against its fixed-vector baseline at one
preset and seed(s), run through `attnrepro sweep` (any executor), then the comparison tables and the full
report (`attnrepro report`). Finished runs are reused and interrupted ones resumed, so an interrupted
reproduce picks up where it was.

A paper model is paired only with a baseline run on the same dataset and language pair: the baseline's preset
of the same name when its data match, else another preset of the same scale that does (e.g. an En-De paper
preset of the baseline for the En-De Transformer); when none does, the paper model runs without a baseline and
the plan says why. `--dry-run` prints these pairs and runs nothing.

Several presets (`--preset paper --preset paper_big`) make one plan of the rows of each, every paper model paired
as above within its own preset; a baseline run shared by two rows is trained once. `--devices`/`--nodes` are
written into every run of the plan (plans/paper-*.yaml set them per row instead)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console

from reproductions import paper_results, registry, tasks
from reproductions.common import rundir
from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_text

from . import tables
from .report import run_flags
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
        candidates = registry.baseline_preset_candidates(preset, registry.get(baseline).presets())
        match = next((p for p in candidates if preset_data(baseline, p, overrides) == data), None)
        if match is None:
            tried = ", ".join(candidates) or "none"
            out.append(Pairing(paper, preset, where, None, None,
                               f"no {baseline} preset trains on {where} (tried: {tried})"))
        else:
            out.append(Pairing(paper, preset, where, baseline, match))
    return out


def check_prerequisites(pairs: list[Pairing], overrides: list[str] | tuple = ()) -> None:
    """Before the first run: what every run needs to be scored (captioning: Java for pycocoevalcap), so that
    a missing piece is one line now, not a failed run after the others have trained. The main job stops rather
    than leave half its table out unasked; the line says how to install the piece or leave its task out."""
    by_task: dict[str, list[Pairing]] = {}
    for pairing in pairs:
        by_task.setdefault(registry.get(pairing.paper).task, []).append(pairing)
    for task, mine in by_task.items():
        try:
            tasks.get(task).check_scoring(registry.get(mine[0].paper).load_config(mine[0].preset, list(overrides)))
        except AttnreproError as err:
            others = [p.paper for t, group in by_task.items() if t != task for p in group]
            rest = ("; or run the others alone: attnrepro reproduce " + " ".join(f"--only {n}" for n in others)
                    if others else "")
            raise AttnreproError(f"{err} (the {task} runs need it to be scored{rest})") from None


def check_nodes(executor: str, nodes: int) -> None:
    """Only SLURM gives a run more than one machine; said before any run is planned. (A run that asks for more
    GPUs than one machine has is the sweep's to refuse, for reproduce and plan files alike.)"""
    if nodes > 1 and executor != "slurm":
        raise AttnreproError(f"--nodes {nodes} needs --executor slurm (multi-node DDP through SLURM's environment); "
                             "on one machine leave --nodes out")


def plan_name(presets: list[str]) -> str:
    """reproduce-paper, or reproduce-paper+paper_big for several presets: the plan's name and default folder."""
    return "reproduce-" + "+".join(presets)


def plan_dict(pairs: list[Pairing], name: str, out: Path, seeds: list[int], overrides: list[str], devices: int = 1,
              nodes: int = 1) -> dict:
    """The plan `reproduce` runs: one group per (reproduction, preset), each paper model's and baseline's once."""
    runs = dict.fromkeys([(p.paper, p.preset) for p in pairs]
                         + [(p.baseline, p.baseline_preset) for p in pairs if p.baseline])
    return {"name": name, "out": str(out), "retries": 1,
            "runs": [{"reproductions": [repro], "presets": [run_preset], "seeds": list(seeds),  # no YAML anchors
                      "overrides": list(overrides), "devices": devices, "nodes": nodes}
                     for repro, run_preset in runs]}


def write_plan(pairs: list[Pairing], name: str, out: Path, seeds: list[int], overrides: list[str], devices: int = 1,
               nodes: int = 1) -> Path:
    """OUT/plan.yaml: the plan `reproduce` runs, kept beside the runs so it can be re-run or edited."""
    path = out / "plan.yaml"
    plan = plan_dict(pairs, name, out, seeds, overrides, devices, nodes)
    atomic_write_text(path, yaml.safe_dump(plan, sort_keys=False))
    return path


def _presets_text(presets: list[str]) -> str:
    return f"{presets[0]} preset" if len(presets) == 1 else f"{', '.join(presets)} presets"


def pairs_table(pairs: list[Pairing], presets: list[str], console: Console) -> None:
    columns = [Col("paper model"), Col("preset"), Col("data"), Col("baseline", "text"), Col("baseline preset")]
    rows = [[p.paper, p.preset, p.data, p.baseline or f"none: {p.why}", p.baseline_preset or ""] for p in pairs]
    options = " ".join(f"--preset {preset}" for preset in presets)
    print_table(console, f"reproduce {options}: each paper model and its baseline on the same data", columns, rows)


def reproduce(preset: str | list[str] = "quick", out: Path | str | None = None, seed: int = 1,
              wandb: str | None = None, only: list[str] | None = None, overrides: list[str] | tuple = (),
              console: Console | None = None, executor: str = "local", seeds: int = 1, slots: int | None = None,
              report: bool = True, dry_run: bool = False, runs_per_gpu: int = 1, detach: bool = False,
              devices: int = 1, nodes: int = 1) -> dict:
    """`preset`: one preset or several (the rows of a paper's table); `devices` GPUs on each of `nodes` nodes for
    every run. A dry run returns the pairs and the plan it would write."""
    from .report import build_report
    from .sweep import load_plan, sweep

    console = console or tables.console()
    presets = list(dict.fromkeys([preset] if isinstance(preset, str) else preset))
    check_nodes(executor, nodes)
    pairs = [pairing for one in presets for pairing in plan_pairs(one, only, overrides)]
    name = plan_name(presets)
    out = Path(out or f"runs/{name}")
    seed_list = list(range(seed, seed + seeds))
    if dry_run:
        pairs_table(pairs, presets, console)
        console.print(f"each run: {devices} device(s) x {nodes} node(s); plan {name} would be written to "
                      f"{out / 'plan.yaml'}", highlight=False, soft_wrap=True)
        return {"pairs": [dataclasses.asdict(p) for p in pairs],
                "plan": plan_dict(pairs, name, out, seed_list, list(overrides), devices, nodes)}
    check_prerequisites(pairs, overrides)
    if wandb:
        import os

        os.environ["WANDB_MODE"] = wandb
    plan_path = write_plan(pairs, name, out, seed_list, list(overrides), devices, nodes)
    sweep(plan_path, executor=executor, slots=slots, console=console, runs_per_gpu=runs_per_gpu, detach=detach)
    results = {}
    for spec in load_plan(plan_path).runs:
        run = rundir.RunDir(spec.run_dir)
        if spec.seed == seed and run.scored():
            results[(spec.name, spec.preset)] = run.metrics()
    for task in dict.fromkeys(registry.get(p.paper).task for p in pairs if (p.paper, p.preset) in results):
        comparison_table(results, pairs, _presets_text(presets), task, console)
    if report and results:
        report_dir = out / "report"
        build_report([out], report_dir)
        console.print(f"report: {report_dir / 'report.md'} and {report_dir / 'report.html'}")
    return results


def _steps_text(training: dict) -> str:
    steps, stopped = training.get("steps"), training.get("stopped_by")
    if steps is None:
        return ""
    return f"{steps}" + (" (time cap)" if stopped == "time" else "")


def comparison_table(results: dict, pairs: list[Pairing], presets: str, task: str, console: Console) -> None:
    """One row per (model, test split): the headline scores, and for a paper its gain over its baseline, which
    was trained and scored on the same dataset, pair and split (`plan_pairs`). Names and numbers are never cut:
    in a narrow terminal the descriptive columns and the non-headline metrics are left out instead."""
    task_ = tasks.get(task)
    lead_name, lead = task_.headline_label, task_.headline
    columns = [Col("model"), Col("role", optional=True), Col("preset"), Col("data", optional=True), Col("split")]
    columns += [Col(c.label, "number", optional=c.key != lead) for c in task_.columns]
    columns += [Col(f"Δ {lead_name} vs baseline", "number"), Col("steps", "number"),
                Col("train time", "number", optional=True), Col("check", "text")]
    rows, shown, notes = [], set(), []
    for pairing in pairs:
        if registry.get(pairing.paper).task != task or (pairing.paper, pairing.preset) not in results:
            continue
        base_key = (pairing.baseline, pairing.baseline_preset)
        base_splits = results.get(base_key, {}).get("splits", {}) if pairing.baseline else {}
        for name, run_preset in ((pairing.paper, pairing.preset), base_key):
            if (name, run_preset) not in results or (name, run_preset) in shown:
                continue  # a baseline shared by two papers (RNNencdec) is shown once
            shown.add((name, run_preset))
            repro, metrics = registry.get(name), results[(name, run_preset)]
            training = metrics.get("training", {})
            wall, flags = training.get("wall_time_s"), run_flags(training)
            for split, s in metrics.get("splits", {}).items():
                delta, check = "", list(flags)
                if name == pairing.paper and split in base_splits:
                    gain = s[lead] - base_splits[split][lead]
                    delta = f"{gain:+.2f}"
                    if gain < 0:
                        check.append(f"scores below its fixed-vector baseline {pairing.baseline} on {split}")
                notes += [f"check this run: {repro.title} ({name}, {run_preset}): {why}" for why in check]
                rows.append([f"{repro.title} ({name})", repro.role, run_preset, pairing.data, split,
                             *(f"{s[c.key]:.2f}" if isinstance(s.get(c.key), (int, float)) else "—"
                               for c in task_.columns),
                             delta, _steps_text(training), f"{wall:.0f} s" if wall is not None else "",
                             "CHECK (below)" if check else "ok"])
    print_table(console, f"{task}: attention vs fixed vector ({presets}; {task_.metric_title})", columns, rows)
    for note in dict.fromkeys(notes):
        console.print(note, style="bold yellow", highlight=False, soft_wrap=True)
