"""The Multi30k benchmark: attention against the fixed vector on real data, on the machine at hand.

Trains each model with the same preset (default `cpu`: 3300 optimiser steps each on the same batches, en-de;
about 28 minutes of training for RNNsearch on the reference machine, 2 cores with AVX512-BF16), one after the
other so each has the whole machine, scores every Multi30k test split present with beam
search, draws BLEU by source length for all models on one figure (Bahdanau et al. Fig. 2), prints a
table and writes everything as JSON with the commit, the machine and the resolved configs.

    python benchmarks/multi30k.py                     # the benchmark (about 80 minutes on the reference machine)
    python benchmarks/multi30k.py --preset tiny       # a smoke run in seconds

A model whose run directory under --out already holds scores is not trained again (its own provenance
is kept), so an interrupted benchmark resumes and a new model can join an earlier table.

Targets, sacreBLEU on test_2016_flickr, judged at the preset's budget of work on any machine: RNNsearch at least
37.0, the Transformer at least 39.0 and ahead of RNNsearch, the fixed-vector RNNencdec at least `CLEARLY_BELOW`
BLEU behind both. The record also gives each run's minutes and tokens/s (speed is its own figure) and whether the
budget kept within `BUDGET_MINUTES` per model, which is judged only on the reference machine.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from rich.console import Console

from harness import hardware
from harness.benchmark import benchmark_parser, budget_minutes, provenance, stopped_by, train_or_reuse
from harness.tables import Col, print_table
from reproductions import registry
from reproductions.common.io import atomic_write_json
from reproductions.common.plots import bleu_by_length_plot
from reproductions.translation.data.files import load_split
from reproductions.translation.metrics import bleu_by_length

# Multi30k sentences are short (test_2016_flickr: 4-32 words, median 11): bins that hold 58-260 sentences each.
FIGURE_BUCKETS = [0, 8, 10, 12, 14, 16, 19]
CLEARLY_BELOW = 2.0  # BLEU: more than one seed's noise (differences of a point are within it)
# each: at least min_bleu (if given), ahead of the ahead_of models, CLEARLY_BELOW behind the behind models
TARGETS = {
    "bahdanau2014": {"split": "test_2016_flickr", "min_bleu": 37.0},
    "vaswani2017": {"split": "test_2016_flickr", "min_bleu": 39.0, "ahead_of": ["bahdanau2014"]},
    "cho2014": {"split": "test_2016_flickr", "behind": ["bahdanau2014", "vaswani2017"]},
}
FIGURE_SPLIT = "test_2016_flickr"


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, ["bahdanau2014", "cho2014", "vaswani2017"],
                              "folder for runs, figure and JSON (default: benchmarks/results/...)")
    parser.add_argument("--pair", default="en-de")
    args = parser.parse_args(argv)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("benchmarks/results") / f"multi30k-{args.preset}-{args.pair}-{stamp}"
    console = Console()
    load_before = os.getloadavg()
    machine = hardware.budget_machine(args.set)
    warning = hardware.budget_warning(machine)
    if warning:
        console.print(f"[yellow]warning: {warning}[/yellow]")
    runs = train_or_reuse(args.models, args.preset, out, args.seed, args.set, f"bench-multi30k-{stamp}", console,
                          pair=args.pair)

    figure = out / f"bleu_by_length_{FIGURE_SPLIT}.png"
    series = bleu_by_length_series(runs, args.pair)
    if series:
        bleu_by_length_plot(series, figure, title=f"Multi30k {FIGURE_SPLIT} {args.pair}: BLEU by source length")

    targets = check_targets(runs)
    result = {
        "benchmark": "multi30k",
        "preset": args.preset,
        "pair": args.pair,
        "seed": args.seed,
        "overrides": args.set,
        **provenance(load_before),
        "time_budget_machine": machine,
        "targets": targets,
        "minutes": budget_minutes(runs, machine),
        "figure": str(figure) if series else None,
        "bleu_by_length": {"split": FIGURE_SPLIT, "buckets_words": FIGURE_BUCKETS, "series": series},
        "runs": runs,
    }
    atomic_write_json(out / "result.json", result)
    print_summary(console, runs)
    for name, t in targets.items():
        verdict = "[green]met[/green]" if t["met"] else "[red]not met[/red]"
        console.print(f"target {name}: {t['text']}: {t['bleu']:.2f} {verdict}")
    if warning:  # again beside the verdicts, which it qualifies
        console.print(f"[yellow]warning: {warning}[/yellow]")
    console.print(f"results: {out / 'result.json'}" + (f"; figure: {figure}" if series else ""))
    return 0


def check_targets(runs: dict) -> dict:
    """The TARGETS whose models were run, each with its sacreBLEU, what it was held against and whether it is met."""
    targets = {}
    for name, target in TARGETS.items():
        split = target["split"]
        if split not in runs.get(name, {}).get("splits", {}):
            continue
        bleu = {other: r["splits"][split]["bleu"] for other, r in runs.items() if split in r.get("splits", {})}
        ahead = [m for m in target.get("ahead_of", []) if m in bleu]
        behind = [m for m in target.get("behind", []) if m in bleu]
        met = (bleu[name] >= target.get("min_bleu", float("-inf")) and all(bleu[name] > bleu[m] for m in ahead)
               and all(bleu[name] <= bleu[m] - CLEARLY_BELOW for m in behind))
        parts = [f">= {target['min_bleu']}"] if "min_bleu" in target else []
        parts += [f"ahead of {m} ({bleu[m]:.2f})" for m in ahead]
        parts += [f"{CLEARLY_BELOW}+ behind {m} ({bleu[m]:.2f})" for m in behind]
        text = " and ".join(parts)
        targets[name] = {**target, "bleu": bleu[name], "text": f"{text} on {split}", "met": met}
    return targets


def bleu_by_length_series(runs: dict, pair: str) -> dict[str, list[dict]]:
    """BLEU by source length on FIGURE_SPLIT, recomputed from each run's hypotheses with FIGURE_BUCKETS."""
    pairs = load_split("multi30k", pair, FIGURE_SPLIT)
    srcs, refs = list(pairs["src"]), list(pairs["tgt"])
    series = {}
    for name, r in runs.items():
        hyps_file = Path(r["run_dir"]) / "hyps" / f"{FIGURE_SPLIT}.txt"
        if hyps_file.exists():
            hyps = hyps_file.read_text(encoding="utf-8").splitlines()
            if len(hyps) == len(srcs):  # runs with eval_limit (tiny presets) are scored on a slice only
                series[f"{registry.get(name).title} ({name})"] = bleu_by_length(srcs, hyps, refs, FIGURE_BUCKETS)
    return series


def print_summary(console: Console, runs: dict) -> None:
    """One row per model and scored split; names and numbers are never cut (harness/tables.py)."""
    # tok BLEU / lc tok BLEU: the conventions of the papers and the Multi30k literature (translation/metrics.py)
    columns = [Col("model"), Col("split")] + [
        Col(header, "number") for header in ("BLEU", "chrF", "tok BLEU", "lc tok BLEU", "train min", "steps",
                                             "tgt tok/s", "train FLOPs", "params")] + [Col("stopped by", "text")]
    rows = []
    for name, r in runs.items():
        tr = r.get("training", {})
        for split, s in r.get("splits", {}).items():
            rows.append([name, split, f"{s['bleu']:.2f}", f"{s['chrf']:.2f}",
                         *("—" if s.get(k) is None else f"{s[k]:.2f}" for k in ("tok_bleu", "lc_tok_bleu")),
                         f"{tr.get('wall_time_s', 0) / 60:.1f}",
                         str(tr.get("steps", "")), f"{tr.get('target_tokens_per_s', 0):.0f}",
                         f"{tr['training_flops']:.2e}" if tr.get("training_flops") else "",
                         f"{tr.get('parameters', 0) / 1e6:.1f}M", stopped_by(tr)])
    print_table(console, "Multi30k benchmark (sacreBLEU, detokenised, beam search)", columns, rows)


if __name__ == "__main__":
    sys.exit(main())
