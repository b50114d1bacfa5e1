"""The Flickr8k benchmark: Show, Attend and Tell (soft and hard) against Show and Tell on real images.

First computes (or reuses) the frozen encoder's features of every Flickr8k train/dev/test image and
times it; then trains each model with the same preset (default `cpu`: at most 30 minutes of decoder
training each), one after the other so each has the whole machine; scores the test split with beam
search through pycocoevalcap (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D; SPICE is unavailable offline), draws
per-word attention maps for a few test images (Xu et al. Figs. 2-3), prints a table and writes everything
as JSON with the commit, the machine and the resolved configs.

    python benchmarks/flickr8k.py                   # the benchmark (about 100 minutes on 2 cores)
    python benchmarks/flickr8k.py --preset tiny     # a smoke run in seconds

Finished runs under --out are reused, so an interrupted benchmark resumes.

Target (issue 4): soft attention at least 19.5 BLEU-4 on the test split (the paper's Flickr8k soft row)
and ahead of Show and Tell on CIDEr-D; hard attention reported the same way.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.benchmark import benchmark_parser, provenance, train_or_reuse
from reproductions import registry
from reproductions.common.io import atomic_write_json

TARGET = {"model": "xu2015", "split": "test", "min_bleu4": 19.5, "cider_ahead_of": "vinyals2015"}
# Xu et al. 2015, Table 1, Flickr8k rows (BLEU-1..4, METEOR; x100), and Show and Tell as Xu et al. list it.
PAPER = {
    "xu2015": {"bleu1": 67.0, "bleu2": 44.8, "bleu3": 29.9, "bleu4": 19.5, "meteor": 18.93},
    "xu2015-hard": {"bleu1": 67.0, "bleu2": 45.7, "bleu3": 31.4, "bleu4": 21.3, "meteor": 20.30},
    "vinyals2015": {"bleu1": 63.0, "bleu2": 41.0, "bleu3": 27.0},
}
METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider_d")
FIGURE_IMAGES = 3  # test images drawn with their per-word attention


def extract_features(preset: str, console: Console) -> dict:
    """Features of every split the preset uses, computed once into the cache; returns the timing."""
    from reproductions.common.caption_module import split_features
    from reproductions.common.data.captions import load_captions
    from reproductions.common.data.sources import cache_root

    cfg = registry.get("xu2015").load_config(preset)
    out = {"encoder": cfg.data.encoder, "splits": {}}
    for split in [cfg.data.train_split, cfg.data.val_split, *cfg.data.test_splits]:
        data = load_captions(cfg.data, split)
        start = time.perf_counter()
        store = split_features(cfg, data, cache_root())
        seconds = time.perf_counter() - start
        out["splits"][split] = {"images": len(data), "seconds": round(seconds, 1), "cache_key": store.key}
        console.print(f"features {split}: {len(data)} images, {seconds:.1f} s (includes hashing; a cache hit is "
                      "hashing only)")
    return out


def attention_figures(runs: dict, out: Path, preset: str) -> list[str]:
    from harness.caption import caption
    from reproductions.common.data.captions import load_captions

    cfg = registry.get("xu2015").load_config(preset)
    test = load_captions(cfg.data, cfg.data.test_splits[0]).limit(FIGURE_IMAGES)
    figures = []
    for name in ("xu2015", "xu2015-hard"):
        if name in runs:
            path = out / f"attention_{name}.png"
            with open(os.devnull, "w") as sink:
                caption(runs[name]["run_dir"], test.paths, plot_attention=path, out=sink)
            figures += [str(path)] + [str(path.with_name(f"{path.stem}-{i}{path.suffix}"))
                                      for i in range(2, len(test) + 1)]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, ["vinyals2015", "xu2015", "xu2015-hard"],
                              "folder for runs, figures and JSON (default: benchmarks/results/...)")
    args = parser.parse_args(argv)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("benchmarks/results") / f"flickr8k-{args.preset}-{stamp}"
    console = Console()
    load_before = os.getloadavg()
    features = extract_features(args.preset, console)
    runs = train_or_reuse(args.models, args.preset, out, args.seed, args.set, f"bench-flickr8k-{stamp}", console)
    figures = attention_figures(runs, out, args.preset)

    target = {}
    soft = runs.get(TARGET["model"], {}).get("splits", {}).get(TARGET["split"])
    rival = runs.get(TARGET["cider_ahead_of"], {}).get("splits", {}).get(TARGET["split"])
    if soft:
        met = soft["bleu4"] >= TARGET["min_bleu4"] and (rival is None or soft["cider_d"] > rival["cider_d"])
        target = {**TARGET, "bleu4": soft["bleu4"], "cider_d": soft["cider_d"],
                  "rival_cider_d": rival["cider_d"] if rival else None, "met": met}
    result = {
        "benchmark": "flickr8k",
        "preset": args.preset,
        "seed": args.seed,
        "overrides": args.set,
        **provenance(load_before),
        "features": features,
        "target": target,
        "paper_table1_flickr8k": PAPER,
        "figures": figures,
        "runs": runs,
    }
    atomic_write_json(out / "result.json", result)
    console.print(summary_table(runs))
    if target:
        verdict = "[green]met[/green]" if target["met"] else "[red]not met[/red]"
        console.print(f"target xu2015 >= {TARGET['min_bleu4']} BLEU-4 and CIDEr-D ahead of vinyals2015: "
                      f"{target['bleu4']:.2f} BLEU-4, CIDEr-D {target['cider_d']:.2f} vs "
                      f"{target['rival_cider_d']} {verdict}")
    console.print(f"results: {out / 'result.json'}")
    return 0


def summary_table(runs: dict) -> Table:
    table = Table(title="Flickr8k test (pycocoevalcap x100, beam search; paper Table 1 in brackets)")
    for column in ("model", "B-1", "B-2", "B-3", "B-4", "METEOR", "ROUGE-L", "CIDEr-D", "train min", "epochs"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, r in runs.items():
        s, tr, paper = r.get("splits", {}).get("test"), r.get("training", {}), PAPER.get(name, {})
        if not s:
            continue
        cells = [f"{s[m]:.2f}" + (f" [{paper[m]:g}]" if m in paper else "") for m in METRICS]
        table.add_row(name, *cells, f"{tr.get('wall_time_s', 0) / 60:.1f}", str(tr.get("epochs_completed", "")))
    return table


if __name__ == "__main__":
    sys.exit(main())
