"""`attnrepro report RUN_DIR_OR_SWEEP... [--out DIR]`: papers against their baselines, in Markdown, HTML
and PNG.

For every paper and every setting (preset and data) it has runs for: the paper's reported number where
the setting is paper scale (`reproductions/NAME/paper_results.yaml`, with its source table), ours as
mean, standard deviation and 95% confidence interval over seeds (Student's t), the fixed-vector baseline
under the same setting, the attention delta with a paired bootstrap test on the test set (sacreBLEU's
for BLEU; per-image CIDEr-D for captions), and a verdict per paper cell: reproduced (within the
tolerance of the paper's file), within tolerance, or not reproduced. A paper cell is compared only with runs
of its model, preset, dataset, language pair and split, scored with its convention (sacreBLEU, tokenised BLEU,
Multi30k's lowercased tokenised BLEU, caption BLEU without brevity penalty: `paper_results.CONVENTIONS`); a
number of another convention is shown beside ours with "n/a" and the reason. Figures: BLEU by source length for
all translation models, attention maps of each paper, learning curves over wall-clock time, and the cost
of every run.
"""

from __future__ import annotations

import html
import math
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

from reproductions import paper_results, registry, tasks
from reproductions.common import rundir
from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_json, atomic_write_text

from .gallery import write_gallery

# Two-sided 95% Student t quantiles t_{0.975, df}; beyond 30 degrees of freedom the normal 1.96 is used.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]
# the paper numbers of another convention shown on a row of ours (never compared), so both numbers stand side
# by side; the No-UNK column has its own row
COUNTERPARTS = {k: tuple(m for m in v if m != "tok_bleu_no_unk") for k, v in paper_results.COUNTERPARTS.items()}


def shown(task: str) -> list[tuple[str, str]]:
    """(metric key, label) of the report's rows: the task's columns, then the papers' conventions."""
    return [(c.key, c.label) for c in tasks.get(task).columns + tasks.get(task).paper_columns]


def headline(task: str) -> str:
    return tasks.get(task).headline


@dataclass
class Run:
    """A finished run as the report groups it: its directory, its entry and what it was trained and scored on."""

    dir: rundir.RunDir
    name: str
    setting: str  # data tag: language pair or caption dataset
    metrics: dict
    task: str
    dataset: str = ""  # what the paper cells are matched on, with pair (paper_results.run_data)
    pair: str | None = None

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def preset(self) -> str:
        return self.dir.preset

    @property
    def seed(self) -> int:
        return self.dir.seed

    @property
    def splits(self) -> dict:
        return self.metrics.get("splits", {})


def find_runs(targets: list[Path]) -> list[Run]:
    runs = []
    for run in rundir.RunDir.find(targets):
        metrics = run.metrics()
        if not metrics.get("splits"):
            continue  # unfinished: nothing to report yet
        repro = registry.get(run.reproduction)  # damage to a run file is one line naming it
        data = run.config["data"]
        dataset, pair = paper_results.run_data(data)
        runs.append(Run(run, repro.name, tasks.get(repro.task).setting(data), metrics, repro.task, dataset, pair))
    if not runs:
        raise AttnreproError("no finished runs (with scored test splits) under " + ", ".join(map(str, targets)))
    return runs


def run_flags(training: dict) -> list[str]:
    """Why a finished run's numbers may not be a result: it stopped before its budget of work (the opt-in
    time cap, an interruption), or its training loss did not fall. [] for a sound run."""
    flags = []
    stopped, steps = training.get("stopped_by"), training.get("steps")
    budget = (training.get("budget") or {}).get("max_steps")
    if stopped == "time":
        flags.append(f"stopped by the time cap (train.max_minutes) at step {steps}"
                     + (f" of {budget}" if budget else "") + ": its numbers depend on the machine's speed")
    elif stopped == "interrupted" or (budget and steps is not None and steps < budget
                                      and stopped not in ("epochs", "early_stopping")):
        flags.append(f"stopped at step {steps}" + (f" of {budget}" if budget else "") + " before its budget")
    loss = training.get("train_loss")
    if loss and not loss["last"] < 0.98 * loss["first"]:
        flags.append(f"training loss did not fall (mean {loss['first']:.3f} over the first tenth of the logged "
                     f"steps, {loss['last']:.3f} over the last)")
    return flags


def below_baseline(section: dict) -> list[str]:
    """The headline rows where the paper model scores below its fixed-vector baseline."""
    key = headline(section["task"])
    return [f"{section['title']} ({section['paper']}) scores below its fixed-vector baseline {section['baseline']} "
            f"on {r['split']} ({r['metric']}: {r['ours']['mean']:.2f} vs {r['baseline']['mean']:.2f})"
            for r in section["rows"] if r["key"] == key and r.get("baseline") and r.get("delta", 0) < 0]


def checks(report: dict) -> list[dict]:
    """Every run or comparison to look at before believing it: {"what", "why"}."""
    found = [{"what": r["run_dir"], "why": why} for r in report["runs"] for why in run_flags(r["training"])]
    found += [{"what": f"{s['paper']} vs {s['baseline']} ({s['preset']})", "why": why}
              for s in report["sections"] for why in below_baseline(s)]
    return found


def summary(values: list[float]) -> dict:
    """Mean, sample standard deviation and the 95% t-interval of the mean (none for a single seed)."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else None
    half = None
    if std is not None:
        t = T975[n - 2] if n - 1 <= len(T975) else 1.96
        half = t * std / math.sqrt(n)
    return {"n": n, "mean": round(mean, 2), "std": None if std is None else round(std, 2),
            "ci95": None if half is None else [round(mean - half, 2), round(mean + half, 2)], "values": values}


def paper_cells() -> list[tuple[paper_results.PaperCell, paper_results.Tolerance]]:
    """Every cell of every reproduction's paper_results.yaml, with its file's tolerance."""
    return paper_results.all_cells()


def verdict(ours: float, paper: float, tolerance) -> str:
    tolerance = tolerance if isinstance(tolerance, dict) else vars(tolerance)
    gap = abs(ours - paper)
    if gap <= tolerance["reproduced"]:
        return "reproduced"
    return "within tolerance" if gap <= tolerance["within"] else "not reproduced"


def _where(dataset: str, pair: str | None, split: str) -> str:
    return " ".join(x for x in (dataset, pair, split) if x)


def _shown_cell(cell) -> dict:
    return {"value": cell.value, "source": cell.source, "label": cell.label, "metric": cell.metric,
            "convention": cell.convention, "column": cell.column, "preset": cell.preset}


def judge(cells, name: str, preset: str, dataset: str, pair: str | None, split: str, metric: str,
          ours: float) -> dict:
    """The paper number for one row of ours, and the verdict: a comparison only with a cell of the same model,
    preset, dataset, pair, split and convention; otherwise "n/a" and why (with the paper's number shown when it
    is of another convention or preset, so that both stand side by side)."""
    convention = paper_results.CONVENTIONS.get(metric)
    mine = [(c, t) for c, t in cells if c.model == name]
    here = [(c, t) for c, t in mine if (c.dataset, c.pair or None, c.split) == (dataset, pair or None, split)]
    same = [(c, t) for c, t in here if c.metric == metric]
    for cell, tolerance in same:
        if cell.preset == preset:
            return {"paper": _shown_cell(cell), "verdict": verdict(ours, cell.value, tolerance)}
    if same:
        cell = next((c for c, _ in same if c.preset == "paper"), same[0][0])
        why = (f"the paper's {cell.label} is trained by preset {cell.preset}, this run by {preset}" if cell.preset
               else f"{cell.label} is a published reference point that no preset trains")
        return {"paper": _shown_cell(cell), "verdict": f"n/a ({why})"}
    other = [c for c, _ in here if c.metric in COUNTERPARTS.get(metric, ()) and c.preset in (preset, None)]
    if other:
        cell = next((c for c in other if c.preset == preset), other[0])
        return {"paper": _shown_cell(cell),
                "verdict": f"n/a (the paper's number is {cell.convention}, ours here is {convention}: "
                           f"compared on the {cell.metric} row)"}
    elsewhere = sorted({_where(c.dataset, c.pair, c.split) for c, _ in mine if c.metric == metric})
    if elsewhere and preset.startswith("paper"):
        return {"verdict": f"n/a (the paper reports {metric} on {', '.join(elsewhere)}, not on "
                           f"{_where(dataset, pair, split)})"}
    return {"verdict": "n/a (no paper number for this setting)" if preset.startswith("paper")
            else f"n/a ({preset} is not paper scale)"}


def paired_test(task: str, split: str, paper_run: Run, base_run: Run) -> dict | None:
    """p-value that the paper model is not better than the baseline on `split` (same seed, same data)."""
    return tasks.get(task).paired_test(split, paper_run.path, base_run.path)


def build_report(targets: list[Path], out: Path, with_tests: bool = True) -> dict:
    runs = find_runs(targets)
    cells = paper_cells()
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.name, run.preset, run.dataset, run.pair or "", run.setting), []).append(run)
    sections = [_section(paper, key, paper_runs, groups, cells, with_tests)
                for paper in registry.papers() for key, paper_runs in sorted(groups.items()) if key[0] == paper.name]
    figures = write_figures(runs, out)
    gallery, gallery_lines = write_gallery([(r.path, r.name, r.setting) for r in runs], out / "figures")
    figures = {"gallery": gallery, **figures} if gallery else figures
    report = {"sections": sections, "figures": {k: [str(p.relative_to(out)) for p in v] for k, v in figures.items()},
              "gallery": gallery_lines,
              "runs": [{"run_dir": str(r.path), "reproduction": r.name, "preset": r.preset, "seed": r.seed,
                        "setting": r.setting, "training": r.metrics.get("training", {})} for r in runs]}
    report["checks"] = checks(report)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", to_markdown(report))
    atomic_write_text(out / "report.html", to_html(report))
    return report


def _baseline_preset(groups: dict, baseline: str, preset: str, dataset: str, pair: str, setting) -> str:
    """The preset of the baseline runs beside a paper model's, paired as `reproduce` pairs them
    (`registry.baseline_preset_candidates`): the first candidate with runs on the same data."""
    candidates = registry.baseline_preset_candidates(preset, [k[1] for k in groups if k[0] == baseline])
    return next((p for p in candidates if (baseline, p, dataset, pair, setting) in groups), preset)


def _section(paper, key: tuple, paper_runs: list[Run], groups: dict, cells, with_tests: bool) -> dict:
    """One paper model's runs of one preset and data setting beside its baseline's, metric by metric."""
    name, preset, dataset, pair, setting = key
    base_preset = _baseline_preset(groups, paper.baseline, preset, dataset, pair, setting)
    base_runs = groups.get((paper.baseline, base_preset, dataset, pair, setting), [])
    where = (dataset, pair or None)
    rows = [row for split in sorted({s for r in paper_runs for s in r.splits}) for metric, label in shown(paper.task)
            if (row := _row(paper, (preset, base_preset), where, split, (metric, label), paper_runs, base_runs,
                            cells, with_tests)) is not None]
    seeds = [r.seed for r in paper_runs]
    note = ("the same seed appears more than once: runs of different configs may be mixed"
            if len(set(seeds)) < len(seeds) else None)
    conventions = sorted({paper_results.CONVENTIONS[r["key"]] for r in rows}
                         | {r["paper"]["convention"] for r in rows if "paper" in r})
    return {"note": note, "paper": name, "title": paper.title, "citation": f"{paper.paper} (arXiv:{paper.arxiv})",
            "conventions": {c: paper_results.WHY[c] for c in conventions}, "dataset": dataset,
            "pair": pair or None, "baseline": paper.baseline, "baseline_preset": base_preset, "preset": preset,
            "setting": setting, "task": paper.task, "seeds": sorted(seeds), "rows": rows}


def _scores(runs: list[Run], split: str, metric: str) -> list[float]:
    """The runs' scores of `metric` on `split`; a score recorded as None (e.g. No-UNK BLEU where no sentence is
    free of [UNK]) is not a score."""
    return [r.splits[split][metric] for r in runs if r.splits.get(split, {}).get(metric) is not None]


def _row(paper, presets: tuple[str, str], where: tuple, split: str, shown_metric: tuple[str, str],
         paper_runs: list[Run], base_runs: list[Run], cells, with_tests: bool) -> dict | None:
    """One row of a section: ours, the baseline's, their difference, the paper's cells and verdicts, and the
    paired test on the headline metric; None where our runs have no such score."""
    (preset, base_preset), (dataset, pair), (metric, label) = presets, where, shown_metric
    ours, base = _scores(paper_runs, split, metric), _scores(base_runs, split, metric)
    if not ours:
        return None
    row = {"split": split, "metric": label, "ours": summary(ours), "baseline": summary(base) if base else None,
           "key": metric}
    if base:
        row["delta"] = round(row["ours"]["mean"] - row["baseline"]["mean"], 2)
        baseline_cell = judge(cells, paper.baseline, base_preset, dataset, pair, split, metric,
                              row["baseline"]["mean"])
        if "paper" in baseline_cell:  # e.g. Table 1's RNNencdec rows beside cho2014's runs
            row["baseline_paper"] = {**baseline_cell["paper"], "verdict": baseline_cell["verdict"]}
    row.update(judge(cells, paper.name, preset, dataset, pair, split, metric, row["ours"]["mean"]))
    if with_tests and base and metric == headline(paper.task):
        significance = _significance(paper.task, split, paper_runs, base_runs)
        if significance:
            row["significance"] = significance
    return row


def _significance(task: str, split: str, paper_runs: list[Run], base_runs: list[Run]) -> dict | None:
    """The paired test of each seed both models ran, summarised by its largest p-value."""
    seeds = sorted({r.seed for r in paper_runs} & {r.seed for r in base_runs})
    tests = [paired_test(task, split, next(r for r in paper_runs if r.seed == s),
                         next(r for r in base_runs if r.seed == s)) for s in seeds]
    tests = [t for t in tests if t]
    if not tests:
        return None
    return {"test": tests[0]["test"], "seeds": len(tests), "max_p_value": max(t["p_value"] for t in tests)}


def write_figures(runs: list[Run], out: Path) -> dict[str, list[Path]]:
    from reproductions.common.plots import bleu_by_length_plot, cost_plot, learning_curves_plot

    from .figures import read_curves

    figures: dict[str, list[Path]] = {}
    first = {}  # one run per (model, preset, setting): the lowest seed
    for run in sorted(runs, key=lambda r: r.seed):
        first.setdefault((run.name, run.preset, run.setting), run)
    by_split: dict[str, dict] = {}
    for run in first.values():  # the runs whose task scores by source length
        for split, scores in run.splits.items():
            if scores.get("bleu_by_length"):
                by_split.setdefault(split, {})[f"{run.name} ({run.preset}, {run.setting})"] = scores["bleu_by_length"]
    for split, series in by_split.items():
        path = out / "figures" / f"bleu_by_length_{split}.png"
        bleu_by_length_plot(series, path, title=f"{split}: BLEU by source length")
        figures.setdefault("bleu_by_length", []).append(path)
    curves = {f"{r.name} ({r.preset})": read_curves(r.path) for r in first.values()}
    curves = {k: v for k, v in curves.items() if v}
    if curves:
        learning_curves_plot(curves, out / "figures" / "learning_curves.png", title="learning curves (seed shown)")
        figures["learning_curves"] = [out / "figures" / "learning_curves.png"]
    for run in first.values():
        if registry.get(run.name).role != "paper":
            continue
        for png in sorted(run.dir.figures.glob("attention*.png"))[:2]:
            dest = out / "figures" / f"{run.name}-{run.preset}-{png.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, dest)
            figures.setdefault("attention", []).append(dest)
    cost_plot([{"label": f"{r.name}-{r.preset}-s{r.seed}", **r.metrics.get("training", {})} for r in runs],
              out / "figures" / "cost.png")
    figures["cost"] = [out / "figures" / "cost.png"]
    return figures


def _fmt(s: dict | None) -> str:
    if not s:
        return "—"
    text = f"{s['mean']:.2f}"
    if s["std"] is not None:
        text += f" ± {s['std']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"
    return text + f" (n={s['n']})"


def _paper_text(cell: dict | None, key: str) -> str:
    """The paper's number; its convention and column named when they are not the row's own."""
    if not cell:
        return "—"
    notes = [cell["convention"]] if cell["convention"] != paper_results.CONVENTIONS.get(key) else []
    notes += [cell["column"]] if cell.get("column") else []
    return f"{cell['value']:g}" + (f" ({', '.join(notes)})" if notes else "")


def _table_rows(section: dict) -> list[list[str]]:
    rows = []
    for r in section["rows"]:
        sig = r.get("significance")
        base = _fmt(r["baseline"])
        if r.get("baseline_paper"):
            base += f"; paper {_paper_text(r['baseline_paper'], r['key'])}: {r['baseline_paper']['verdict']}"
        rows.append([r["split"], r["metric"], _paper_text(r.get("paper"), r["key"]), _fmt(r["ours"]),
                     base, f"{r['delta']:+.2f}" if "delta" in r else "—",
                     f"{sig['max_p_value']:.3f} ({sig['seeds']} seed{'s' * (sig['seeds'] > 1)})" if sig else "—",
                     r["verdict"]])
    return rows


def _convention_lines(section: dict) -> list[str]:
    """One sentence per scoring convention in the section: why the numbers of two rows differ."""
    conventions = section.get("conventions") or {}
    if len(conventions) < 2:
        return []
    return ["Scores of different conventions are never compared: " + "; ".join(
        f"**{name}**: {why}" for name, why in conventions.items()) + "."]


HEADER = ["split", "metric", "paper", "ours: mean ± std [95% CI]", "baseline (same setting)", "Δ attention",
          "p (paired bootstrap)", "verdict"]


def to_markdown(report: dict) -> str:
    lines = ["# attnrepro report: attention against the fixed vector", ""]
    if report.get("checks"):
        lines += ["## Check these runs before believing them", ""]
        lines += [f"- check this run: `{c['what']}`: {c['why']}" for c in report["checks"]] + [""]
    for s in report["sections"]:
        lines += [f"## {s['title']} ({s['paper']}) vs {registry.get(s['baseline']).title} ({s['baseline']})", "",
                  f"{s['citation']}; preset `{s['preset']}`, {s['setting']}, seeds {s['seeds']}."
                  + (f" Baseline preset `{s['baseline_preset']}` (same data)."
                     if s.get("baseline_preset", s["preset"]) != s["preset"] else "")
                  + (f" Note: {s['note']}." if s.get("note") else ""), "",
                  "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in _table_rows(s)]
        sources = sorted({r["paper"]["source"] for r in s["rows"] if "paper" in r})
        if sources:
            lines += ["", "Paper numbers: " + "; ".join(sources) + "."]
        lines += ["", *_convention_lines(s)]
        lines.append("")
    if report.get("gallery"):
        lines += ["## The papers' figures, with these runs", ""] + [f"- {line}" for line in report["gallery"]] + [""]
    for kind, paths in report["figures"].items():
        lines += [f"## Figures: {kind.replace('_', ' ')}", ""] + [f"![{kind}]({p})" for p in paths] + [""]
    lines += ["## Runs", "", "| run | reproduction | preset | setting | seed | steps (stopped by) | wall min "
              "| device-h | FLOPs |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in report["runs"]:
        t = r["training"]
        mark = " (check: see above)" if run_flags(t) else ""
        lines.append(f"| `{r['run_dir']}`{mark} | {r['reproduction']} | {r['preset']} | {r['setting']} | {r['seed']} | "
                     f"{t.get('steps', '—')} ({t.get('stopped_by', '—')}) | {t.get('wall_time_s', 0) / 60:.1f} | "
                     f"{t.get('device_hours') or '—'} | {t.get('training_flops', 0):.2e} |")
    return "\n".join(lines) + "\n"


def to_html(report: dict) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>attnrepro report</title><style>"
             "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}</style></head><body>",
             "<h1>attnrepro report: attention against the fixed vector</h1>"]
    if report.get("checks"):
        parts.append("<h2>Check these runs before believing them</h2><ul>" + "".join(
            f"<li>check this run: <code>{html.escape(c['what'])}</code>: {html.escape(c['why'])}</li>"
            for c in report["checks"]) + "</ul>")
    for s in report["sections"]:
        parts.append(f"<h2>{html.escape(s['title'])} ({s['paper']}) vs {html.escape(s['baseline'])}</h2>"
                     f"<p>{html.escape(s['citation'])}; preset <code>{s['preset']}</code>, "
                     f"{html.escape(s['setting'])}, seeds {s['seeds']}.</p><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in HEADER) + "</tr>")
        for row in _table_rows(s):
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
        parts += [f"<p>{html.escape(line.replace('**', ''))}</p>" for line in _convention_lines(s)]
    if report.get("gallery"):
        parts.append("<h2>The papers' figures, with these runs</h2><ul>"
                     + "".join(f"<li>{html.escape(line)}</li>" for line in report["gallery"]) + "</ul>")
    for kind, paths in report["figures"].items():
        parts.append(f"<h2>{html.escape(kind.replace('_', ' '))}</h2>")
        parts += [f"<img src='{html.escape(p)}' alt='{html.escape(kind)}'>" for p in paths]
    parts.append("</body></html>")
    return "\n".join(parts)
