"""Exact resumption of an interrupted run, on top of what Lightning restores by itself (weights, optimiser,
schedulers, loop counters, callbacks).

Two things are ours: where the data order stood (the epoch and the batches of it already trained on, so the
batch sampler continues with the next batch of the same permutation) and the random number generators
(dropout masks, hard-attention samples), restored just before the first resumed batch. With both, a run
killed at any step and resumed ends exactly where the uninterrupted run with the same seed ends.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from .data.batching import reshuffle


def capture_rng() -> dict:
    """Plain tensors, ints and lists only, so that checkpoints load with torch.load(weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumableMixin:
    """For the LightningModules: call `_count_batch()` in `training_step`, `_save_resume_state(checkpoint)`
    in `on_save_checkpoint` and `_load_resume_state(checkpoint)` in `on_load_checkpoint`."""

    _epoch_batches = 0
    _pending_rng: dict | None = None

    def _count_batch(self) -> None:
        self._epoch_batches += 1

    def on_train_epoch_start(self) -> None:
        # Not called when Lightning restarts in the middle of an epoch, so the restored count survives.
        self._epoch_batches = 0
        reshuffle(self.trainer, self.current_epoch)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self._pending_rng is not None:
            restore_rng(self._pending_rng)
            self._pending_rng = None

    def _save_resume_state(self, checkpoint: dict) -> None:
        checkpoint["attnrepro_resume"] = {"epoch": self.current_epoch, "batches": self._epoch_batches,
                                          "rng": capture_rng()}

    def _load_resume_state(self, checkpoint: dict) -> None:
        state = checkpoint.get("attnrepro_resume")
        if not state:
            return
        self._epoch_batches = state["batches"]
        self._pending_rng = state["rng"]
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None:
            datamodule.resume_at = (state["epoch"], state["batches"])
