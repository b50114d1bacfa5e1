"""Checkpoint averaging (Vaswani et al. 2017, §6.1: "averaging the last 5 checkpoints, which were written
at 10-minute intervals"; 20 for the big models).

The mean is taken as a stream: one checkpoint is read at a time (memory-mapped, so its optimiser state is never
read into memory), its weights are added to a float64 running sum, and it is released before the next is read.
Memory is then the sum plus one checkpoint's weights, whatever the number averaged: 20 checkpoints of the big
Transformer with their Adam state would be ~52 GB held at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from .checkpoint import CheckpointError, read_checkpoint
from .io import atomic_path


class RunningMean:
    """The element-wise mean of floating-point tensors of state dicts added one by one (summed in float64, then
    cast back to each tensor's dtype); other entries (integer buffers, counters) are the last state's."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}  # float64 running sums
        self.dtypes: dict[str, torch.dtype] = {}
        self.others: dict[str, torch.Tensor] = {}  # the last state's non-floating-point entries
        self.order: list[str] = []  # the last state's keys, in its order
        self.count = 0

    def add(self, state: dict[str, torch.Tensor]) -> None:
        if self.count and state.keys() != set(self.order):
            raise CheckpointError(f"checkpoint {self.count} has different parameters from the others; cannot average")
        self.order = list(state.keys())
        for key, value in state.items():
            if not value.is_floating_point():
                self.others[key] = value.clone()  # a copy: `value` may live in a file mapping
            else:
                if key in self.sums:
                    self.sums[key] += value.double()
                else:
                    self.sums[key] = value.double().clone()
                self.dtypes[key] = value.dtype
        self.count += 1

    def result(self) -> dict[str, torch.Tensor]:
        if not self.count:
            raise CheckpointError("no checkpoints to average")
        return {key: (self.sums[key] / self.count).to(self.dtypes[key]) if key in self.sums else self.others[key]
                for key in self.order}


def average_state_dicts(states: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point tensors; other entries are taken from the last state."""
    mean = RunningMean()
    for state in states:
        mean.add(state)
    return mean.result()


def _read_mapped(path: Path) -> dict:
    """A checkpoint with its tensors memory-mapped: only the tensors used (the weights) are read from disk."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)  # our own files (config, vocab)
    except Exception:  # an old (non-zip) file or a damaged one: the ordinary reader, with its clear errors
        return read_checkpoint(path)
    if not isinstance(ckpt, dict) or "attnrepro" not in ckpt or "state_dict" not in ckpt:
        return read_checkpoint(path)  # raises the reader's error
    return ckpt


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Write a checkpoint whose weights are the mean of `paths` (the last one's config and vocabularies),
    holding one of them at a time."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    mean, merged = RunningMean(), None
    for i, path in enumerate(paths):
        ckpt = _read_mapped(path)
        mean.add(ckpt["state_dict"])
        if i == len(paths) - 1:
            merged = {key: value for key, value in ckpt.items() if key not in ("state_dict", "optimizer_states")}
        del ckpt  # released before the next one is read
    # an average has no optimiser state to resume
    merged["state_dict"] = mean.result()
    merged["attnrepro"] = {**merged["attnrepro"], "averaged_from": [Path(p).name for p in paths]}
    with atomic_path(out) as tmp:
        torch.save(merged, tmp)
    return out
