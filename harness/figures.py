"""The pictures of a finished run, written to RUN_DIR/figures/ and, when W&B is on, logged to its W&B run:
learning curves (by step and by wall-clock minutes) and what the run's task draws (attention maps of the first
test examples, BLEU by source length), plus a table of sample outputs."""

from __future__ import annotations

import csv
from pathlib import Path

from reproductions import tasks
from reproductions.common import rundir
from reproductions.common.plots import learning_curves_plot


def read_curves(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_run_figures(run_dir: Path, checkpoint: Path, logger=None) -> dict[str, list[Path]]:
    """-> {kind: [png paths]} for what this run could draw."""
    from reproductions.loading import load_model

    run_dir = Path(run_dir)
    out = run_dir / "figures"
    figures: dict[str, list[Path]] = {}
    rows = read_curves(run_dir)
    if rows:
        learning_curves_plot({run_dir.name: rows}, out / "learning_curves.png")
        figures["learning_curves"] = [out / "learning_curves.png"]
    loaded = load_model(checkpoint)
    metrics = rundir.RunDir(run_dir).metrics()
    drawn, table = tasks.get(loaded.task).run_figures(loaded, run_dir, out, metrics.get("splits", {}))
    figures.update(drawn)
    if logger is not None:
        for kind, paths in figures.items():
            if paths:
                logger.log_image(key=f"figures/{kind}", images=[str(p) for p in paths])
        if table:
            logger.log_table(key="samples", columns=list(table[0]), data=[list(r.values()) for r in table])
    return figures
