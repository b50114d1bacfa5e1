"""Checkpoint averaging (Vaswani et al. 2017, §6.1: "averaging the last 5 checkpoints, which were written
at 10-minute intervals"; 20 for the big models)."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CheckpointError, read_checkpoint
from .io import atomic_path


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point tensors; other entries are taken from the last state."""
    if not states:
        raise CheckpointError("no checkpoints to average")
    keys = states[-1].keys()
    for i, state in enumerate(states):
        if state.keys() != keys:
            raise CheckpointError(f"checkpoint {i} has different parameters from the others; cannot average")
    averaged = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            averaged[key] = torch.stack([s[key].float() for s in states]).mean(0).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Write a checkpoint whose weights are the mean of `paths` (the last one's config and vocabularies)."""
    ckpts = [read_checkpoint(p) for p in paths]
    merged = dict(ckpts[-1])
    merged["state_dict"] = average_state_dicts([c["state_dict"] for c in ckpts])
    merged.pop("optimizer_states", None)  # an average has no optimiser state to resume
    merged["attnrepro"] = {**merged["attnrepro"], "averaged_from": [Path(p).name for p in paths]}
    with atomic_path(out) as tmp:
        torch.save(merged, tmp)
    return out
