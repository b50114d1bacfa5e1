"""`attnrepro report RUN_DIR_OR_SWEEP... [--out DIR]`: papers against their baselines, in Markdown, HTML
and PNG.

For every paper and every setting (preset and data) it has runs for: the paper's reported number where
the setting is paper scale (`reproductions/NAME/paper_results.yaml`, with its source table), ours as
mean, standard deviation and 95% confidence interval over seeds (Student's t), the fixed-vector baseline
under the same setting, the attention delta with a paired bootstrap test on the test set (sacreBLEU's
for BLEU; per-image CIDEr-D for captions), and a verdict per paper cell: reproduced (within the
tolerance of the paper's file), within tolerance, or not reproduced. Figures: BLEU by source length for
all translation models, attention maps of each paper, learning curves over wall-clock time, and the cost
of every run.
"""

from __future__ import annotations

import html
import json
import math
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

from reproductions import registry
from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_json, atomic_write_text

# Two-sided 95% Student t quantiles t_{0.975, df}; beyond 30 degrees of freedom the normal 1.96 is used.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]
HEADLINE = {"translation": ("bleu", "BLEU"), "captioning": ("cider_d", "CIDEr-D")}
SHOWN = {"translation": [("bleu", "BLEU"), ("chrf", "chrF")],
         "captioning": [("bleu4", "BLEU-4"), ("meteor", "METEOR"), ("cider_d", "CIDEr-D"), ("bleu1", "BLEU-1")]}


@dataclass
class Run:
    path: Path
    name: str
    preset: str
    seed: int
    setting: str  # data tag: language pair or caption dataset
    metrics: dict
    task: str

    @property
    def splits(self) -> dict:
        return self.metrics.get("splits", {})


def find_runs(targets: list[Path]) -> list[Run]:
    paths: list[Path] = []
    for target in map(Path, targets):
        if not target.exists():
            raise AttnreproError(f"{target} does not exist; give run directories or sweep folders")
        found = [target] if (target / "provenance.json").is_file() else sorted(
            p.parent for p in target.rglob("provenance.json") if "wandb" not in p.parts)
        if not found:
            raise AttnreproError(f"{target} holds no runs (no provenance.json below it)")
        paths += found
    runs = []
    for path in dict.fromkeys(paths):
        provenance = json.loads((path / "provenance.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").is_file() else {}
        if not metrics.get("splits"):
            continue  # unfinished: nothing to report yet
        config = yaml.safe_load((path / "config.yaml").read_text())
        repro = registry.get(provenance["reproduction"])
        setting = config["data"].get("pair") or config["data"].get("dataset", "")
        runs.append(Run(path, repro.name, provenance["preset"], provenance["seed"], setting, metrics, repro.task))
    if not runs:
        raise AttnreproError("no finished runs (with scored test splits) under " + ", ".join(map(str, targets)))
    return runs


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


def paper_cells() -> dict[str, list[dict]]:
    """model -> its cells from every paper_results.yaml."""
    cells: dict[str, list[dict]] = {}
    for folder in sorted({r.folder for r in registry.REPRODUCTIONS.values()}):
        path = folder / "paper_results.yaml"
        if path.is_file():
            data = yaml.safe_load(path.read_text())
            for cell in data.get("cells") or []:
                cells.setdefault(cell["model"], []).append(
                    {**cell, "source": data["source"], "tolerance": data["tolerance"]})
    return cells


def verdict(ours: float, paper: float, tolerance: dict) -> str:
    gap = abs(ours - paper)
    if gap <= tolerance["reproduced"]:
        return "reproduced"
    return "within tolerance" if gap <= tolerance["within"] else "not reproduced"


def paired_test(task: str, split: str, paper_run: Run, base_run: Run) -> dict | None:
    """p-value that the paper model is not better than the baseline on `split` (same seed, same data)."""
    if task == "translation":
        hyp_a, hyp_b = (r.path / "hyps" / f"{split}.txt" for r in (paper_run, base_run))
        if not (hyp_a.is_file() and hyp_b.is_file()):
            return None
        from sacrebleu.metrics import BLEU
        from sacrebleu.significance import PairedTest

        from reproductions.common.data.translation import load_split

        config = yaml.safe_load((paper_run.path / "config.yaml").read_text())["data"]
        refs = list(load_split(config["dataset"], config["pair"], split, config.get("eval_limit"))["tgt"])
        systems = [("baseline", hyp_b.read_text(encoding="utf-8").splitlines()),
                   ("paper", hyp_a.read_text(encoding="utf-8").splitlines())]
        if any(len(h) != len(refs) for _, h in systems):
            return None
        _, scores = PairedTest(systems, {"BLEU": BLEU()}, [refs], test_type="bs", n_samples=1000)()
        return {"test": "sacreBLEU paired bootstrap (1000 resamples)", "p_value": scores["BLEU"][1].p_value}
    return _caption_bootstrap(split, paper_run, base_run)


def _caption_bootstrap(split: str, paper_run: Run, base_run: Run) -> dict | None:
    import numpy as np

    from reproductions.common.caption_metrics import per_image_cider
    from reproductions.common.captioner import CaptionDataConfig
    from reproductions.common.config import from_dict
    from reproductions.common.data.captions import load_captions

    files = [r.path / "hyps" / f"{split}.json" for r in (paper_run, base_run)]
    if not all(f.is_file() for f in files):
        return None
    cfg = from_dict(CaptionDataConfig, yaml.safe_load((paper_run.path / "config.yaml").read_text())["data"],
                    str(paper_run.path / "config.yaml"))
    data = load_captions(cfg, split)
    refs = dict(zip(data.images, data.captions))
    hyps = [{h["image"]: h["caption"] for h in json.loads(f.read_text())} for f in files]
    images = [im for im in hyps[0] if im in hyps[1] and im in refs]
    a = per_image_cider([hyps[0][i] for i in images], [refs[i] for i in images])
    b = per_image_cider([hyps[1][i] for i in images], [refs[i] for i in images])
    rng = np.random.default_rng(12345)
    idx = rng.integers(0, len(images), size=(1000, len(images)))
    wins = ((a[idx].mean(1) - b[idx].mean(1)) > 0).sum()
    return {"test": "paired bootstrap over images, per-image CIDEr-D (1000 resamples)",
            "p_value": round(float((1000 - wins + 1) / 1001), 4)}


def build_report(targets: list[Path], out: Path, with_tests: bool = True) -> dict:
    runs = find_runs(targets)
    cells = paper_cells()
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.name, run.preset, run.setting), []).append(run)
    sections = []
    for paper in registry.papers():
        for (name, preset, setting), paper_runs in sorted(groups.items()):
            if name != paper.name:
                continue
            base_runs = groups.get((paper.baseline, preset, setting), [])
            task = paper.task
            rows = []
            for split in sorted({s for r in paper_runs for s in r.splits}):
                for metric, label in SHOWN[task]:
                    ours = [r.splits[split][metric] for r in paper_runs if metric in r.splits.get(split, {})]
                    base = [r.splits[split][metric] for r in base_runs if metric in r.splits.get(split, {})]
                    if not ours:
                        continue
                    row = {"split": split, "metric": label, "ours": summary(ours),
                           "baseline": summary(base) if base else None}
                    if base:
                        row["delta"] = round(row["ours"]["mean"] - row["baseline"]["mean"], 2)
                    for cell in cells.get(name, []):
                        if (cell["preset"], cell["split"], cell["metric"]) == (preset, split, metric):
                            row["paper"] = {"value": cell["value"], "source": cell["source"], "label": cell["label"]}
                            row["verdict"] = verdict(row["ours"]["mean"], cell["value"], cell["tolerance"])
                    if "paper" not in row:
                        row["verdict"] = "n/a (no paper number for this setting)" if preset.startswith("paper") \
                            else f"n/a ({preset} is not paper scale)"
                    if with_tests and base and metric == HEADLINE[task][0]:
                        seeds = sorted({r.seed for r in paper_runs} & {r.seed for r in base_runs})
                        tests = [paired_test(task, split, next(r for r in paper_runs if r.seed == s),
                                             next(r for r in base_runs if r.seed == s)) for s in seeds]
                        tests = [t for t in tests if t]
                        if tests:
                            row["significance"] = {"test": tests[0]["test"], "seeds": len(tests),
                                                   "max_p_value": max(t["p_value"] for t in tests)}
                    rows.append(row)
            seeds = [r.seed for r in paper_runs]
            note = ("the same seed appears more than once: runs of different configs may be mixed"
                    if len(set(seeds)) < len(seeds) else None)
            sections.append({"note": note, "paper": name, "title": paper.title,
                             "citation": f"{paper.paper} (arXiv:{paper.arxiv})",
                             "baseline": paper.baseline, "preset": preset, "setting": setting, "task": task,
                             "seeds": sorted(r.seed for r in paper_runs), "rows": rows})
    figures = write_figures(runs, out)
    report = {"sections": sections, "figures": {k: [str(p.relative_to(out)) for p in v] for k, v in figures.items()},
              "runs": [{"run_dir": str(r.path), "reproduction": r.name, "preset": r.preset, "seed": r.seed,
                        "setting": r.setting, "training": r.metrics.get("training", {})} for r in runs]}
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", to_markdown(report))
    atomic_write_text(out / "report.html", to_html(report))
    return report


def write_figures(runs: list[Run], out: Path) -> dict[str, list[Path]]:
    from reproductions.common.plots import bleu_by_length_plot, cost_plot, learning_curves_plot

    from .figures import read_curves

    figures: dict[str, list[Path]] = {}
    first = {}  # one run per (model, preset, setting): the lowest seed
    for run in sorted(runs, key=lambda r: r.seed):
        first.setdefault((run.name, run.preset, run.setting), run)
    translation = [r for r in first.values() if r.task == "translation"]
    by_split: dict[str, dict] = {}
    for run in translation:
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
        for png in sorted((run.path / "figures").glob("attention*.png"))[:2]:
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


def _table_rows(section: dict) -> list[list[str]]:
    rows = []
    for r in section["rows"]:
        sig = r.get("significance")
        rows.append([r["split"], r["metric"], f"{r['paper']['value']:g}" if "paper" in r else "—", _fmt(r["ours"]),
                     _fmt(r["baseline"]), f"{r['delta']:+.2f}" if "delta" in r else "—",
                     f"{sig['max_p_value']:.3f} ({sig['seeds']} seed{'s' * (sig['seeds'] > 1)})" if sig else "—",
                     r["verdict"]])
    return rows


HEADER = ["split", "metric", "paper", "ours: mean ± std [95% CI]", "baseline (same setting)", "Δ attention",
          "p (paired bootstrap)", "verdict"]


def to_markdown(report: dict) -> str:
    lines = ["# attnrepro report: attention against the fixed vector", ""]
    for s in report["sections"]:
        lines += [f"## {s['title']} ({s['paper']}) vs {registry.get(s['baseline']).title} ({s['baseline']})", "",
                  f"{s['citation']}; preset `{s['preset']}`, {s['setting']}, seeds {s['seeds']}."
                  + (f" Note: {s['note']}." if s.get("note") else ""), "",
                  "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in _table_rows(s)]
        sources = sorted({r["paper"]["source"] for r in s["rows"] if "paper" in r})
        if sources:
            lines += ["", "Paper numbers: " + "; ".join(sources) + "."]
        lines.append("")
    for kind, paths in report["figures"].items():
        lines += [f"## Figures: {kind.replace('_', ' ')}", ""] + [f"![{kind}]({p})" for p in paths] + [""]
    lines += ["## Runs", "", "| run | reproduction | preset | setting | seed | wall min | device-h | FLOPs |",
              "|---|---|---|---|---:|---:|---:|---:|"]
    for r in report["runs"]:
        t = r["training"]
        lines.append(f"| `{r['run_dir']}` | {r['reproduction']} | {r['preset']} | {r['setting']} | {r['seed']} | "
                     f"{t.get('wall_time_s', 0) / 60:.1f} | {t.get('device_hours') or '—'} | "
                     f"{t.get('training_flops', 0):.2e} |")
    return "\n".join(lines) + "\n"


def to_html(report: dict) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>attnrepro report</title><style>"
             "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}</style></head><body>",
             "<h1>attnrepro report: attention against the fixed vector</h1>"]
    for s in report["sections"]:
        parts.append(f"<h2>{html.escape(s['title'])} ({s['paper']}) vs {html.escape(s['baseline'])}</h2>"
                     f"<p>{html.escape(s['citation'])}; preset <code>{s['preset']}</code>, "
                     f"{html.escape(s['setting'])}, seeds {s['seeds']}.</p><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in HEADER) + "</tr>")
        for row in _table_rows(s):
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    for kind, paths in report["figures"].items():
        parts.append(f"<h2>{html.escape(kind.replace('_', ' '))}</h2>")
        parts += [f"<img src='{html.escape(p)}' alt='{html.escape(kind)}'>" for p in paths]
    parts.append("</body></html>")
    return "\n".join(parts)
