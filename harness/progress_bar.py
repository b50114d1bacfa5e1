"""Progress of a training run against its budget of work: the steps done of `train.max_steps` (or of the
epochs' batches) and an estimate of the time left.

In a terminal it is a tqdm bar; in a log or a pipe, one plain line every tenth of the budget (a bar redrawn
with carriage returns is unreadable there). Either way RUN_DIR/progress.json holds the latest figures.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytorch_lightning as pl

from reproductions.common.io import atomic_write_json

from .progress import PROGRESS_FILE, minutes


def step_budget(trainer: pl.Trainer) -> int | None:
    """Optimiser steps the run will make: max_steps, else epochs x steps per epoch (None when unknown)."""
    if trainer.max_steps and trainer.max_steps > 0:
        return trainer.max_steps
    batches = trainer.num_training_batches
    if trainer.max_epochs and trainer.max_epochs > 0 and math.isfinite(batches):
        return trainer.max_epochs * max(1, int(batches) // max(1, trainer.accumulate_grad_batches))
    return None


class BudgetProgress(pl.Callback):
    """Shows steps done of the budget and the time left; writes RUN_DIR/progress.json every few seconds."""

    def __init__(self, run_dir: Path, label: str, stream=None, write_every_s: float = 5.0):
        self.run_dir, self.label = Path(run_dir), label
        self.stream = stream or sys.stderr
        self.write_every_s = write_every_s
        self._bar = None
        self._total: int | None = None
        self._start = self._start_step = 0
        self._next_line = 0.0  # budget fraction of the next plain line
        self._last_write = 0.0

    def on_train_start(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        self._total = step_budget(trainer)
        self._start, self._start_step = time.perf_counter(), trainer.global_step
        self._next_line = (trainer.global_step / self._total if self._total else 0) + 0.1
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=self._total, initial=trainer.global_step, desc=self.label, unit="step",
                             file=self.stream, dynamic_ncols=True, leave=True)
        else:
            print(f"{self.label}: training for {self._total or '?'} steps (from step {trainer.global_step})",
                  file=self.stream, flush=True)

    def _eta(self, step: int) -> tuple[float, float | None]:
        elapsed = time.perf_counter() - self._start
        done = step - self._start_step
        if not self._total or done <= 0:
            return elapsed, None
        return elapsed, elapsed / done * max(self._total - step, 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_rank != 0:
            return
        step = trainer.global_step
        elapsed, eta = self._eta(step)
        if self._bar is not None:
            self._bar.n = step
            if step % max(1, trainer.log_every_n_steps) == 0:  # the loss is read at logging intervals only
                loss = trainer.callback_metrics.get("train/loss")
                if loss is not None:
                    self._bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
            self._bar.refresh()
        elif self._total and step / self._total >= self._next_line:
            self._next_line = step / self._total + 0.1
            loss = trainer.callback_metrics.get("train/loss")
            loss_text = f", loss {float(loss):.3f}" if loss is not None else ""
            print(f"{self.label}: step {step}/{self._total} ({100 * step / self._total:.0f}%){loss_text}, "
                  f"{minutes(elapsed)} so far, about {minutes(eta)} left", file=self.stream, flush=True)
        now = time.perf_counter()
        if now - self._last_write >= self.write_every_s:
            self._last_write = now
            self._write(step, elapsed, eta)

    def _write(self, step: int, elapsed: float, eta: float | None) -> None:
        try:
            atomic_write_json(self.run_dir / PROGRESS_FILE, {"step": step, "total": self._total,
                                                             "elapsed_s": round(elapsed, 1),
                                                             "eta_s": None if eta is None else round(eta, 1),
                                                             "updated": time.time()})
        except OSError:  # progress is a courtesy: a full disk must not stop training
            pass

    def on_train_end(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        elapsed, _ = self._eta(trainer.global_step)
        self._write(trainer.global_step, elapsed, 0.0)
        if self._bar is not None:
            self._bar.n = trainer.global_step
            self._bar.close()
        else:
            print(f"{self.label}: trained {trainer.global_step} steps in {minutes(elapsed)}", file=self.stream,
                  flush=True)
