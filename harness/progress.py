"""Where a training run stands against its budget of work, as RUN_DIR/progress.json: written by the run's
progress bar (`progress_bar.BudgetProgress`), read by `attnrepro sweep` and `reproduce` for their summaries of
runs in other processes. No heavy imports here: the sweep's own process reads it."""

from __future__ import annotations

import json
from pathlib import Path

PROGRESS_FILE = "progress.json"


def read_progress(run_dir: Path | str) -> dict | None:
    """The run's latest progress figures (step, total, elapsed_s, eta_s), or None."""
    try:
        return json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def minutes(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
