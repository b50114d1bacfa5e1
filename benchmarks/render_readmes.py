"""Render the READMEs' tables of numbers from the records, so that no number can drift or contradict another.

Every table of numbers in README.md, the paper READMEs, their history pages and benchmarks/README.md sits between
two markers, `<!-- render:NAME -->` and `<!-- /render:NAME -->`; this script rewrites what lies between them from
the benchmark records (benchmarks/results/*/result.json and the other JSON files there), the papers' cells
(reproductions/NAME/paper_results.yaml) and the preset files. tests/test_readmes.py fails when a file differs
from what this script renders now.

    python benchmarks/render_readmes.py           # rewrite the marked regions in place
    python benchmarks/render_readmes.py --check   # exit 1 and name the regions that are out of date

It reads JSON and YAML only (no torch), so it runs in a second.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

FILES = [
    "README.md",
    "benchmarks/README.md",
    "reproductions/bahdanau2014/README.md",
    "reproductions/bahdanau2014/HISTORY.md",
    "reproductions/cho2014/README.md",
    "reproductions/vaswani2017/README.md",
    "reproductions/vaswani2017/HISTORY.md",
    "reproductions/xu2015/README.md",
    "reproductions/xu2015/HISTORY.md",
    "reproductions/vinyals2015/README.md",
]

REGION = re.compile(r"(<!-- render:([\w-]+) -->\n)(.*?)(<!-- /render:\2 -->)", re.S)

TITLES = {"bahdanau2014": "RNNsearch", "cho2014": "RNNencdec", "vaswani2017": "Transformer",
          "xu2015": "Soft-Attention", "xu2015-hard": "Hard-Attention", "vinyals2015": "Show and Tell"}
BASELINE = {"bahdanau2014": "cho2014", "vaswani2017": "cho2014", "xu2015": "vinyals2015",
            "xu2015-hard": "vinyals2015"}
TRANSLATION = ("bahdanau2014", "cho2014", "vaswani2017")


# ---------------------------------------------------------------------------------------------- the records


def _load(path: Path) -> dict:
    data = json.loads(path.read_text())
    data["_path"] = path.relative_to(ROOT).as_posix()
    data["_folder"] = path.parent.relative_to(ROOT).as_posix()
    return data


def records(benchmark: str | None = None) -> list[dict]:
    """Every benchmarks/results/*/result.json (optionally of one benchmark), newest first."""
    found = [_load(Path(p)) for p in glob.glob(str(RESULTS / "*" / "result.json"))]
    if benchmark:
        found = [r for r in found if r.get("benchmark") == benchmark]
    return sorted(found, key=lambda r: (r.get("date", ""), r["_path"]), reverse=True)


def _link(record: dict, depth: int) -> str:
    return f"[`{Path(record['_folder']).name}`]({'../' * depth}{record['_folder']}/result.json)"


def precision(run: dict) -> str:
    """The precision a run trained in; records from before `auto` precision trained in fp32."""
    return run.get("training", {}).get("precision") or "32-true"


def machine(record: dict) -> str:
    """The record's machine in words: the GPU, or the CPU model (where recorded), its cores and bf16 support."""
    m = record.get("machine", {})
    if m.get("gpus"):
        return f"1 {m['gpus'][0]}"
    if record.get("device") == "cuda" and record.get("device_name"):
        return f"1 {record['device_name']}"
    name = f"{m.get('cpus', '?')}-core {m.get('cpu') or 'CPU'}"
    unnamed = "" if m.get("cpu") else ", CPU model not recorded"
    runs = [r for r in record.get("runs", {}).values() if isinstance(r, dict) and "training" in r]
    if "cpu_bf16" in m:
        return name + (" with AVX512-BF16" if m["cpu_bf16"] else " without AVX512-BF16") + unnamed
    if any(precision(r) == "bf16-mixed" for r in runs):  # `auto` chose bf16-mixed: the CPU multiplies bf16
        return name + " with AVX512-BF16" + unnamed
    return name + unnamed


def budget(run: dict) -> str:
    train = run.get("config", {}).get("train", {})
    if train.get("max_minutes") and train.get("max_steps", -1) in (-1, 0, None):
        return f"{train['max_minutes']:g} min"
    if train.get("max_steps", -1) > 0:
        return f"{train['max_steps']} steps"
    return "-"


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def paper_cells(name: str) -> list[dict]:
    path = ROOT / "reproductions" / name / "paper_results.yaml"
    return (yaml.safe_load(path.read_text()) or {}).get("cells", []) if path.exists() else []


def _preset_runs(model: str, benchmark: str) -> list[tuple[dict, dict]]:
    """(record, run) of `model` in records of `benchmark` that ran the preset unchanged, newest first."""
    out = []
    for record in records(benchmark):
        run = record.get("runs", {}).get(model)
        if isinstance(run, dict) and not record.get("overrides"):
            out.append((record, run))
    return out


def _ours_at(cell: dict) -> str:
    """Our number for a paper cell: a record of the same preset, dataset and split, else 'not run'."""
    for record in records():
        run = record.get("runs", {}).get(cell["model"])
        if not isinstance(run, dict) or record.get("preset") != cell.get("preset"):
            continue
        split = run.get("splits", {}).get(cell["split"], {})
        if run.get("config", {}).get("data", {}).get("dataset") == cell["dataset"] and cell["metric"] in split:
            return f"{split[cell['metric']]:.2f} ({_link(record, 0)})"
    return "not run at paper scale yet"


# ------------------------------------------------------------------------------------------------ regions


def glance_paper() -> str:
    """README: each paper's headline number beside ours of the same preset and convention."""
    picks = [("bahdanau2014", "RNNsearch-50", "All"), ("cho2014", "RNNencdec-50", "All"),
             ("vaswani2017", "Transformer (base)", None), ("xu2015", "Soft-Attention", None),
             ("xu2015-hard", "Hard-Attention", None), ("vinyals2015", "NIC", None)]
    metric_of = {"bahdanau2014": "tok_bleu", "cho2014": "tok_bleu", "vaswani2017": "tok_bleu",
                 "xu2015": "bleu4_nobp", "xu2015-hard": "bleu4_nobp", "vinyals2015": "bleu1_nobp"}
    rows = []
    for model, label, column in picks:
        folder = "bahdanau2014" if model == "cho2014" else ("xu2015" if model == "xu2015-hard" else model)
        for cell in paper_cells(folder):
            if (cell["model"] == model and cell["label"] == label and cell["metric"] == metric_of[model]
                    and cell.get("preset") in ("paper",) and (column is None or cell.get("column") == column)):
                where = f"{cell['dataset']} {cell.get('pair', '')} {cell['split']}".replace("  ", " ")
                rows.append([f"{TITLES[model]} (`{model}`)", where, f"`{cell['metric']}`", f"{cell['value']:g}",
                             _ours_at(cell), f"`attnrepro train {model} --preset {cell['preset']}`"])
                break
    return _table(["model", "dataset, split", "convention", "paper", "ours, same preset", "command"], rows, {3})


def glance_small() -> str:
    """README: each paper model against its baseline in the newest record that trained both together."""
    specs = [("bahdanau2014", "multi30k", "test_2016_flickr", "bleu", "sacreBLEU"),
             ("vaswani2017", "multi30k", "test_2016_flickr", "bleu", "sacreBLEU"),
             ("xu2015", "flickr8k", "test", "cider_d", "CIDEr-D"),
             ("xu2015-hard", "flickr8k", "test", "cider_d", "CIDEr-D")]
    rows, machines, timed = [], {}, False
    for model, benchmark, split, metric, label in specs:
        base = BASELINE[model]
        for record, run in _preset_runs(model, benchmark):
            other = record["runs"].get(base)
            if not isinstance(other, dict):
                continue
            ours, theirs = run["splits"][split][metric], other["splits"][split][metric]
            machines[record["_folder"]] = machine(record)
            timed = timed or budget(run).endswith(" min")
            rows.append([f"{TITLES[model]} vs {TITLES[base]}", f"{benchmark} {split}, {label}",
                         _f(ours), _f(theirs), f"{ours - theirs:+.2f}", str(record.get("seed")),
                         f"{budget(run)}, {precision(run)}", _link(record, 0),
                         f"`python benchmarks/{record.get('command') or benchmark + '.py'}`"])
            break
    caption = ("The newest record of the `cpu` preset for each pair, one seed, on a "
               + "; ".join(sorted(set(machines.values()))) + ". "
               + ("Rows whose budget is in minutes come from records made before the presets stopped on steps: "
                  "**time-budgeted runs**, which show the direction of the effect, not the current presets' "
                  "numbers. " if timed else "")
               + "Each command is the record's own, run at the commit its result.json names.")
    header = ["paper model vs baseline", "data, metric", "ours", "baseline", "Δ", "seed", "budget, precision",
              "record", "command"]
    return caption + "\n\n" + _table(header, rows, {2, 3, 4, 5})


def quick() -> str:
    """README: the main job (`make reproduce`, the quick preset) from the newest reproduce-quick-* record."""
    found = [r for r in records("reproduce") if Path(r["_folder"]).name.startswith("reproduce-quick")]
    reference = [r for r in found if not r.get("load_processes") and not r.get("compared_with")]
    found = reference or found  # the job alone on its machine; its twins (compared with it) are named after it
    if not found:
        return ("_Not yet recorded at the new step budgets._ `python benchmarks/reproduce.py --out "
                "benchmarks/results/reproduce-quick-NAME` runs this job and writes its record; "
                "`python benchmarks/render_readmes.py` then fills this table.")
    record = found[0]
    rows = []
    for _label, run in sorted(record["runs"].items(), key=lambda kv: (kv[1].get("role") != "paper", kv[0])):
        scores = "; ".join(f"{split} {s.get(run['headline'])}" for split, s in run.get("scores", {}).items()
                           if s.get(run["headline"]) is not None)
        rows.append([run["model"], f"`{run['reproduction']}`", run["role"], str(run["seed"]),
                     f"{run['headline']}: {scores}", str(run["steps"]), str(run.get("stopped_by")),
                     _f(run.get("minutes"), 1)])
    caption = (f"`{record['command'].strip()}` on a {machine(record)}: {record['wall_time_s'] / 60:.1f} minutes "
               f"in all, exit status {record['exit_status']} (record: {_link(record, 0)}).{_twins(record)}")
    header = ["model", "name", "role", "seed", "test score", "steps", "stopped by", "minutes"]
    return caption + "\n\n" + _table(header, rows, {3, 5, 7})


def _twins(reference: dict) -> str:
    """The same job run again and compared with `reference`: beside busy loops, or with its data downloaded into
    an empty cache; whether its scores and steps agree."""
    found = []
    for other in records("reproduce"):
        compared = other.get("compared_with", {})
        if Path(compared.get("record", "")).parent.name != Path(reference["_folder"]).name:
            continue
        how = [f"{other['load_processes']} busy-loop processes beside it"] if other.get("load_processes") else []
        source = other.get("data_source") or {}
        if source and not source.get("data_folder"):
            how.append("its data downloaded" + (" through a loopback mirror" if source.get("mirror") else "")
                       + (" into an empty cache" if source.get("cache_empty_at_start") else ""))
        verdict = ("identical scores, steps and tokens" if compared.get("identical")
                   else "different: " + "; ".join(compared.get("differences", [])))
        labels = compared.get("compared", list(other["runs"]))
        runs = ("every run" if set(labels) == set(reference["runs"])
                else ", ".join(f"`{label.split('-quick')[0]}`" for label in labels))
        found.append(f" The same job ({runs}) with {' and '.join(how) or 'nothing changed'} on the same machine: "
                     f"{other['wall_time_s'] / 60:.1f} minutes, {verdict} ({_link(other, 0)}).")
    return "".join(found)


GALLERY_FIGURE = "gallery-bahdanau2014-fig3-1.png"  # benchmarks/gallery.py: Bahdanau et al.'s Fig. 3 (a)


def figures() -> str:
    """README: the BLEU-by-length figure of the newest record with all three translation models, and an
    alignment map where a record holds one (benchmarks/results/*/alignment_*.png)."""
    lines = []
    for record in records("multi30k"):
        series = record.get("bleu_by_length", {}).get("series", {})
        if len(series) == 3 and record.get("figure") and (ROOT / record["figure"]).exists():
            lines.append(f"![BLEU by source length, {record['bleu_by_length']['split']}]({record['figure']})")
            lines.append("")
            lines.append(f"BLEU by source length (Bahdanau et al. Fig. 2) of the three translation models of "
                         f"{_link(record, 0)} ({machine(record)}, {budget(next(iter(record['runs'].values())))} each).")
            break
    lines.append("")
    gallery = next((r for r in records("gallery") if (ROOT / r["_folder"] / GALLERY_FIGURE).exists()), None)
    if gallery is not None:  # the gallery's Fig. 3: the paper's own sentence, English to French
        run = gallery["summary"]["bahdanau2014"]
        lines.append(f"![RNNsearch's alignment of Bahdanau et al.'s Fig. 3 (a) sentence]({gallery['_folder']}/"
                     f"{GALLERY_FIGURE})")
        lines.append("")
        lines.append(f"Bahdanau et al.'s Fig. 3 (a) sentence, drawn by the gallery (`attnrepro report`, `attnrepro "
                     f"explore`) with RNNsearch trained {run['steps']} steps on Multi30k {gallery['pair']} (sacreBLEU "
                     f"{run['bleu']:.2f} on {gallery['split']}; {_link(gallery, 0)}, {machine(gallery)}): white is "
                     "high weight. Multi30k holds image descriptions and the sentence is news, so a model this small "
                     "translates it poorly; the map shows what it read for each word it wrote.")
        return "\n".join(lines)
    # the newest record (by its own date, not the file's mtime: a fresh clone gives every file the same one)
    maps = [f"{r['_folder']}/alignment_bahdanau2014.png" for r in records()
            if (ROOT / r["_folder"] / "alignment_bahdanau2014.png").exists()]
    if maps:
        rel = maps[0]
        lines.append(f"![An RNNsearch alignment (Bahdanau et al. Fig. 3)]({rel})")
    else:
        lines.append("No alignment map is recorded yet; `attnrepro translate RUN_DIR --plot-attention align.png` "
                     "draws one for any trained translation run (Bahdanau et al. Fig. 3).")
    return "\n".join(lines)


def _preset(model: str, preset: str) -> dict:
    from_ = {"cho2014": "bahdanau2014", "vinyals2015": "xu2015", "xu2015-hard": "xu2015"}.get(model, model)
    cfg = yaml.safe_load((ROOT / "reproductions" / from_ / "configs" / f"{preset}.yaml").read_text())
    if model == "cho2014":  # registry preset_overrides: Table 2's own update counts for RNNencdec
        own = {"paper": 600000, "paper30": 846000, "paper_ende": 600000}
        if preset in own:
            cfg.setdefault("train", {})["max_steps"] = own[preset]
    return cfg


def presets() -> str:
    """README: what each preset below `paper` trains for (from the preset files)."""
    rows = []
    for preset, what in [("tiny", "tests and a first try"), ("quick", "`make reproduce`: minutes on a CPU"),
                         ("cpu", "the CPU benchmarks"), ("gpu", "the same budget on one GPU")]:
        cells = []
        for model in ("bahdanau2014", "cho2014", "vaswani2017", "xu2015", "xu2015-hard", "vinyals2015"):
            train = _preset(model, preset).get("train", {})
            steps = train.get("max_steps", -1)
            cells.append(f"{steps} steps" if steps and steps > 0 else f"{train.get('max_epochs')} epoch(s)")
        rows.append([f"`{preset}`", what, *cells])
    header = ["preset", "for", *[f"`{m}`" for m in ("bahdanau2014", "cho2014", "vaswani2017", "xu2015",
                                                  "xu2015-hard", "vinyals2015")]]
    return _table(header, rows)


def paper_scale() -> str:
    """README: each paper preset, its data and budget (from the preset files), and what a record says of its time."""
    throughput = [json.loads(Path(p).read_text())
                  for p in sorted(glob.glob(str(RESULTS / "throughput-cuda" / "*.json")))]
    best = None  # the fastest uncompiled bf16 paper-size Transformer row (the presets do not compile)
    for rec in throughput:
        for row in rec.get("training", []) if isinstance(rec.get("training"), list) else []:
            if (row.get("model"), row.get("size"), row.get("compiled"), row.get("precision")) != \
                    ("vaswani2017", "paper", False, "bf16-mixed"):
                continue
            if best is None or row["target_tokens_per_s"] > best[1]["target_tokens_per_s"]:
                best = (rec, row)
    rows = []
    for model, preset in [("bahdanau2014", "paper"), ("cho2014", "paper"), ("bahdanau2014", "paper30"),
                          ("cho2014", "paper30"), ("cho2014", "paper_ende"), ("vaswani2017", "paper"),
                          ("vaswani2017", "paper_big"), ("vaswani2017", "paper_enfr"), ("xu2015", "paper"),
                          ("xu2015-hard", "paper"), ("vinyals2015", "paper")]:
        cfg = _preset(model, preset)
        data, train = cfg.get("data", {}), cfg.get("train", {})
        where = f"{data.get('dataset', 'flickr8k')} {data.get('pair', '')}".strip()
        if train.get("max_steps", -1) > 0:
            per = (f"{train['tokens_per_step']} target tokens" if train.get("tokens_per_step")
                   else f"{data.get('batch_sentences') or data.get('batch_size')} sentences")
            work = f"{train['max_steps']} steps of {per}"
        else:
            work = f"up to {train.get('max_epochs')} epochs, early stopping" if train.get("max_epochs") else "-"
        hours = "not measured"
        if model == "vaswani2017" and preset == "paper" and best:
            tokens = train["max_steps"] * train["tokens_per_step"]
            hours = (f"~{tokens / best[1]['target_tokens_per_s'] / 3600:.1f} GPU-hours projected: "
                     f"{train['max_steps']} x {train['tokens_per_step']} tokens at "
                     f"{best[1]['target_tokens_per_s'] / 1000:.1f}k tokens/s (bf16, {best[0]['device_name']}, "
                     f"Multi30k batches of ~25k tokens; `benchmarks/throughput.py`)")
        rows.append([f"`attnrepro train {model} --preset {preset}`", where, work, hours])
    return _table(["command", "data", "budget (preset file)", "time on GPUs (how obtained)"], rows)


def _one_per_setting(models: tuple[str, ...], benchmark: str):
    """(model, record, run): the newest `cpu`-preset run of each model, seed, precision and machine."""
    seen = set()
    for model in models:
        for record, run in _preset_runs(model, benchmark):
            key = (model, record.get("seed"), precision(run), machine(record))
            if key not in seen:
                seen.add(key)
                yield model, record, run


def _translation_rows(models: tuple[str, ...], depth: int) -> str:
    rows, machines = [], set()
    for model, record, run in _one_per_setting(models, "multi30k"):
        machines.add(machine(record))
        s16 = run["splits"].get("test_2016_flickr", {})
        s17 = run["splits"].get("test_2017_flickr", {})
        rows.append([f"{TITLES[model]} (`{model}`)", str(record.get("seed")), _f(s16.get("bleu")),
                     _f(s16.get("tok_bleu")), _f(s16.get("lc_tok_bleu")), _f(s16.get("chrf")),
                     _f(s17.get("bleu")), str(run["training"]["steps"]), f"{budget(run)}, {precision(run)}",
                     machine(record), _link(record, depth)])
    caption = ("Multi30k en-de, `cpu` preset as it was then: **30-minute time-budgeted runs** (the presets now "
               "stop on steps), one row per model, seed and machine (the newest record of each). sacreBLEU is "
               "primary; `tok_bleu` is the papers' tokenised convention, `lc_tok_bleu` the Multi30k literature's.")
    header = ["model", "seed", "2016 sacreBLEU", "`tok_bleu`", "`lc_tok_bleu`", "chrF", "2017 sacreBLEU", "steps",
              "budget, precision", "machine", "record"]
    return caption + "\n\n" + _table(header, rows, {1, 2, 3, 4, 5, 6, 7})


def _caption_rows(models: tuple[str, ...], depth: int) -> str:
    rows = []
    for model, record, run in _one_per_setting(models, "flickr8k"):
        t = run["splits"]["test"]
        rows.append([f"{TITLES[model]} (`{model}`)", str(record.get("seed")), _f(t.get("bleu4")),
                     _f(t.get("bleu4_nobp")), _f(t.get("meteor")), _f(t.get("cider_d")),
                     f"{t.get('beam')}", str(run["training"]["steps"]), f"{budget(run)}, {precision(run)}",
                     machine(record), _link(record, depth)])
    redecoded = []
    for record in records("redecode"):
        if not any(m in record.get("runs", {}) for m in models):
            continue
        for model in models:
            run = record["runs"].get(model)
            if isinstance(run, dict) and "test" in run.get("scores", {}):
                t = run["scores"]["test"]
                redecoded.append([f"{TITLES[model]} (`{model}`)", "1", _f(t.get("bleu4")), _f(t.get("bleu4_nobp")),
                                  _f(t.get("meteor")), _f(t.get("cider_d")),
                                  " ".join(o.split(".", 1)[1] for o in record.get("overrides", [])),
                                  "same checkpoint", "decoded again", machine(record), _link(record, depth)])
    caption = ("Flickr8k test (1000 images), frozen EfficientNet-Lite0 features, `cpu` preset as it was then: "
               "**30-minute time-budgeted runs** (the presets now stop on steps), the newest record of each model, "
               "seed and machine; pycocoevalcap x100. The last rows are the newest checkpoints decoded again with "
               "the current presets' decoding (`benchmarks/redecode.py`).")
    header = ["model", "seed", "BLEU-4", "BLEU-4 no BP", "METEOR", "CIDEr-D", "beam", "steps", "budget, precision",
              "machine", "record"]
    return caption + "\n\n" + _table(header, rows + redecoded, {1, 2, 3, 4, 5, 7})


def paper_table(folder: str, models: tuple[str, ...]) -> str:
    """A paper README: the paper's cells (paper_results.yaml) beside ours of the same preset and convention."""
    rows = []
    for cell in [c for c in paper_cells(folder) if c["model"] in models]:
        col = f" ({cell['column']})" if cell.get("column") else ""
        where = f"{cell['dataset']} {cell.get('pair', '')} {cell['split']}".replace("  ", " ")
        ours = _ours_at(cell) if cell.get("preset") else "no preset trains it"
        command = f"`attnrepro train {cell['model']} --preset {cell['preset']}`" if cell.get("preset") else "-"
        rows.append([cell["label"], where, f"`{cell['metric']}`{col}", f"{cell['value']:g}", ours, command])
    return _table(["model", "dataset, split", "metric", "paper", "ours, same preset and convention",
                   "command"], rows, {3})


def trials(models: tuple[str, ...], benchmark: str, depth: int) -> str:
    """A history page: every record that changed a preset setting, with what it changed and what it scored."""
    rows = []
    split, metric = ("test_2016_flickr", "bleu") if benchmark == "multi30k" else ("test", "cider_d")
    for record in records(benchmark):
        if not record.get("overrides"):
            continue
        for model in models:
            run = record.get("runs", {}).get(model)
            if isinstance(run, dict):
                s = run["splits"].get(split, {})
                second = _f(s.get("lc_tok_bleu")) if benchmark == "multi30k" else _f(s.get("bleu4"))
                rows.append([record.get("date", "")[:10], f"`{' '.join(record['overrides'])}`", TITLES[model],
                             _f(s.get(metric)), second, str(run["training"]["steps"]),
                             f"{budget(run)}, {precision(run)}", _link(record, depth)])
    names = ("test_2016_flickr sacreBLEU", "`lc_tok_bleu`") if benchmark == "multi30k" else ("CIDEr-D", "BLEU-4")
    header = ["date", "change from the preset", "model", names[0], names[1], "steps", "budget, precision", "record"]
    return _table(header, rows, {3, 4, 5})


def lambda_sweep() -> str:
    """xu2015's history: the λ_r sweep of hard attention (benchmarks/results/lambda-r-sweep/, one run per file)."""
    folder = RESULTS / "lambda-r-sweep"
    rows = []
    for path in sorted(folder.glob("metrics-r*.json"), key=lambda p: float(p.stem.split("-r", 1)[1])):
        r = path.stem.split("-r", 1)[1]
        metrics, cfg = json.loads(path.read_text()), yaml.safe_load((folder / f"config-r{r}.yaml").read_text())
        t, train = metrics["splits"]["test"], metrics["training"]
        rows.append([f"{cfg['loss']['reinforce']:g}", f"{train['steps']} ({train['epochs_completed']})",
                     _f(train.get("best_val_bleu4")), _f(t["bleu4"]), _f(t["meteor"]), _f(t["cider_d"]),
                     f"{cfg['train']['max_minutes']:g} min, {train['precision']}",
                     f"[`metrics-r{r}.json`](../../benchmarks/results/lambda-r-sweep/metrics-r{r}.json)"])
    return _table(["λ_r (`loss.reinforce`)", "steps (epochs)", "best val BLEU-4", "test BLEU-4", "METEOR", "CIDEr-D",
                   "budget, precision", "record"], rows, {1, 2, 3, 4, 5})


def targets(benchmark: str, models: tuple[str, ...], depth: int) -> str:
    """A paper README: the benchmark's quality targets for `models`, as judged by the newest record whose runs
    stopped on steps (the targets are set at the `cpu` budget, so a time-budgeted record does not judge them)."""
    judged = [r for r in records(benchmark) if r.get("targets") and not r.get("overrides")
              and all(budget(run).endswith("steps") for run in r["runs"].values())]
    if not judged:
        return (f"No record judges these targets at the `cpu` preset's step budget yet: "
                f"`python benchmarks/{benchmark}.py` does.")
    record, rows = judged[0], []
    for name in models:
        target = record["targets"].get(name)
        if target:
            score = target.get("bleu", target.get("score"))
            verdict = "met" if target["met"] else "**not met**"
            rows.append([f"{TITLES[name]} (`{name}`)", target["text"], _f(score), verdict,
                         budget(record["runs"][name]), _link(record, depth)])
    intro = (f"The benchmark's targets at the `cpu` budget, judged by its newest record ({machine(record)}, "
             f"`{record.get('command', '')}`):\n\n")
    return intro + _table(["model", "target", "ours", "", "budget", "record"], rows, {2})


def caption_targets(models: tuple[str, ...], depth: int) -> str:
    """A captioning paper's README: the Flickr8k benchmark's targets, as judged by its newest record whose runs
    stopped on steps (the targets are set at the `cpu` budget)."""
    judged = [r for r in records("flickr8k") if r.get("target") and not r.get("overrides")
              and all(budget(run).endswith("steps") for run in r["runs"].values())]
    if not judged:
        return ("No record judges these targets at the `cpu` preset's step budget yet: "
                "`python benchmarks/flickr8k.py` does.")
    record = judged[0]
    rows = [[f"{TITLES[c['model']]} (`{c['model']}`)", c["target"], _f(c["value"]), _f(c["against"]),
             "met" if c["met"] else "**not met**", budget(record["runs"][c["model"]]), _link(record, depth)]
            for c in record["target"] if c["model"] in models]
    intro = (f"The benchmark's targets at the `cpu` budget, judged by its newest record ({machine(record)}, "
             f"`{record.get('command', '')}`):\n\n")
    return intro + _table(["model", "target", "ours", "against", "", "budget", "record"], rows, {2, 3})


def records_index() -> str:
    """benchmarks/README.md: every record, its benchmark, date, command and machine."""
    rows = []
    for path in sorted(RESULTS.glob("*/*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if not isinstance(data, dict) or "benchmark" not in data and "command" not in data:
            continue
        data["_folder"] = path.parent.relative_to(ROOT).as_posix()
        rel = path.relative_to(RESULTS).as_posix()
        rows.append([f"[`{rel}`](results/{rel})", data.get("benchmark", "-"), data.get("date", "-")[:10],
                     f"`{str(data.get('command', '-')).strip()[:90]}`", machine(data) if data.get("machine") else "-"])
    return _table(["record", "benchmark", "date", "command", "machine"], rows)


def leaderboard() -> str:
    rows = []
    for record in records("leaderboard"):
        t, c, s = record["translation"], record["captioning"], record["settings"]
        rows.append([record["database"], str(s["workers"]), str(s["clients"]), str(t["submissions"]), _f(t["per_s"]),
                     _f(c["seconds"], 1), record.get("date", "")[:10], machine(record), _link(record, 1)])
    header = ["database", "workers", "clients", "newstest2014 submissions", "submissions/s",
              "captioning submission, s", "date", "machine", "record"]
    return _table(header, rows, {1, 2, 3, 4, 5})


RENDERERS = {
    "glance-paper": glance_paper,
    "glance-small": glance_small,
    "quick": quick,
    "figures": figures,
    "paper-scale": paper_scale,
    "presets": presets,
    "bahdanau2014-paper": lambda: paper_table("bahdanau2014", ("bahdanau2014", "cho2014")),
    "bahdanau2014-ours": lambda: _translation_rows(("bahdanau2014", "cho2014"), 2),
    "bahdanau2014-trials": lambda: trials(("bahdanau2014", "cho2014"), "multi30k", 2),
    "bahdanau2014-targets": lambda: targets("multi30k", ("bahdanau2014", "cho2014"), 2),
    "vaswani2017-targets": lambda: targets("multi30k", ("vaswani2017",), 2),
    "cho2014-ours": lambda: _translation_rows(("cho2014",), 2),
    "vaswani2017-paper": lambda: paper_table("vaswani2017", ("vaswani2017",)),
    "vaswani2017-ours": lambda: _translation_rows(("vaswani2017", "cho2014"), 2),
    "vaswani2017-trials": lambda: trials(("vaswani2017",), "multi30k", 2),
    "xu2015-paper": lambda: paper_table("xu2015", ("xu2015", "xu2015-hard")),
    "xu2015-ours": lambda: _caption_rows(("xu2015", "xu2015-hard", "vinyals2015"), 2),
    "xu2015-trials": lambda: trials(("xu2015", "xu2015-hard"), "flickr8k", 2),
    "xu2015-targets": lambda: caption_targets(("xu2015", "xu2015-hard"), 2),
    "vinyals2015-paper": lambda: paper_table("vinyals2015", ("vinyals2015",)),
    "vinyals2015-ours": lambda: _caption_rows(("vinyals2015",), 2),
    "xu2015-lambda": lambda_sweep,
    "records": records_index,
    "leaderboard": leaderboard,
}


def render_text(text: str, where: str = "") -> str:
    """`text` with every marked region rendered afresh; an unknown region name is an error."""

    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in RENDERERS:
            raise KeyError(f"{where}: unknown render region '{name}' (known: {', '.join(RENDERERS)})")
        return f"{match.group(1)}{RENDERERS[name]()}\n{match.group(4)}"

    return REGION.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a region is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in FILES:
        path = ROOT / name
        if not path.exists():
            continue
        old = path.read_text()
        new = render_text(old, name)
        if new != old:
            stale.append(name)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("out of date (run python benchmarks/render_readmes.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    print(("up to date" if args.check else "rendered") + f": {len(FILES)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
