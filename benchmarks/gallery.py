"""The papers' famous figures drawn by the gallery (`attnrepro report`, `attnrepro explore`) with runs trained here.

Trains RNNsearch, the Transformer and the fixed-vector RNNencdec on Multi30k English-French (default preset
`quick`: 700 optimiser steps each, a few CPU minutes), then draws Bahdanau et al.'s Fig. 3 (the paper's own
sentences, RNNsearch's alignment) and Vaswani et al.'s encoder heads ("The animal didn't cross the street because
it was too tired."), with the baseline's translation of the same sentences beside them. Prints the runs' test
BLEU, the gallery's lines and how long one explorer answer (`Task.attend`) takes per model, and writes the figures
and result.json (commit, machine, resolved configs) into the record folder.

    python benchmarks/gallery.py                    # about 15 minutes on 2 cores
    python benchmarks/gallery.py --preset tiny      # a smoke run in a minute

A model whose run directory under --out/runs already holds scores is not trained again.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console

from harness.benchmark import benchmark_parser, provenance, train_or_reuse
from harness.gallery import FIGURES, write_gallery
from reproductions import tasks
from reproductions.common.io import atomic_write_json

SPLIT = "test_2016_flickr"
REPEATS = 5  # explorer answers timed per model (the median is reported)


def time_attend(run_dir: Path, text: str) -> dict:
    """Seconds of one explorer answer (beam search, the alternatives, every attention view) on a sentence."""
    import torch

    from harness.evaluate import locate
    from reproductions.loading import load_model

    loaded = load_model(locate(run_dir)[1])
    task = tasks.get(loaded.task)
    task.attend(loaded, text)  # warm
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        task.attend(loaded, text)
        times.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(times), 4), "repeats": REPEATS, "device": "cpu",
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, ["bahdanau2014", "vaswani2017", "cho2014"],
                              "record folder (default: benchmarks/results/gallery-PRESET-PAIR)")
    parser.set_defaults(preset="quick")
    parser.add_argument("--pair", default="en-fr")
    parser.add_argument("--note", default="", help="what the record should say about how it was made")
    args = parser.parse_args(argv)
    out = args.out or Path("benchmarks/results") / f"gallery-{args.preset}-{args.pair}"
    console = Console()
    load_before = os.getloadavg()
    runs = train_or_reuse(args.models, args.preset, out, args.seed, args.set, f"bench-gallery-{args.preset}", console,
                          pair=args.pair)
    figures, lines = write_gallery([(Path(r["run_dir"]), name, args.pair) for name, r in runs.items()], out)
    sentence = FIGURES[0].inputs[0]
    attend = {name: time_attend(Path(r["run_dir"]), sentence) for name, r in runs.items()}
    summary = {name: {"bleu": r["splits"][SPLIT]["bleu"], "steps": r["training"]["steps"],
                      "training_minutes": round(r["training"]["wall_time_s"] / 60, 1)} for name, r in runs.items()}
    result = {"benchmark": "gallery", "preset": args.preset, "pair": args.pair, "seed": args.seed,
              "overrides": args.set, **provenance(load_before), "run_note": args.note, "split": SPLIT,
              "summary": summary,
              "attend": {"sentence": sentence, **attend}, "figures": [p.name for p in figures], "gallery": lines,
              "runs": runs}
    atomic_write_json(out / "result.json", result)
    for name, s in summary.items():
        console.print(f"{name}: sacreBLEU {s['bleu']:.2f} on {SPLIT} ({args.pair}) after {s['steps']} steps, "
                      f"{s['training_minutes']} min; one explorer answer {attend[name]['median_s'] * 1000:.0f} ms")
    for line in lines:
        console.print(line)
    console.print(f"figures: {', '.join(str(p) for p in figures)}; record: {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
