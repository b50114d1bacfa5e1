"""Config sections every task shares: the optimiser, training (a budget in work, precision, checkpoints) and
decoding (the keys of beam search; each task adds how long an output may be).

Each task adds its data and decoding sections (`reproductions.translation.config`,
`reproductions.captioning.config`) and each reproduction its `model` section.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch


@dataclass
class OptimConfig:
    name: Literal["adadelta", "adam", "rmsprop"] = "adam"
    lr: float = 1e-3
    eps: float = 1e-8
    rho: float = 0.95  # Adadelta's rho; RMSProp's decay rate
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam only
    weight_decay: float = 0.0
    clip_norm: float | None = 1.0
    schedule: Literal["constant", "plateau", "inverse_sqrt"] = "constant"
    warmup_steps: int = 4000  # inverse_sqrt only
    plateau_factor: float = 0.5  # plateau only: lr multiplier when validation loss stalls
    plateau_patience: int = 1
    # >0: over this last fraction of the run's budget (train.max_minutes, max_steps or max_epochs, whichever
    # ends it first) the schedule's learning rate is scaled down linearly to 0 ("cooldown"; optim.py)
    cooldown: float = 0.0
    # What the gradient is of: "token_mean", the NLL per target token of the optimiser step (all ranks and
    # accumulated batches together), or "batch_sum", the NLL summed over every target token of the step, as
    # GroundHog's cost was (SoftmaxLayer.get_cost: cost.sum()): its gradients are thousands of times larger, so a
    # clip_norm of 1 binds on every update and Adadelta's eps matters less. The logged train/loss is per token
    # either way.
    loss_scale: Literal["token_mean", "batch_sum"] = "token_mean"


@dataclass
class TrainConfig:
    # A run's budget is work: optimiser steps (max_steps), or epochs where max_steps is -1. The same seed then
    # gives the same numbers on a fast, slow or busy machine; how long it took is measured and recorded beside.
    max_epochs: int = 10
    max_steps: int = -1  # -1: no step limit
    # opt-in wall-clock cap on fitting; a run it stops records training.stopped_by "time", and every table
    # that shows the run marks it (its numbers then depend on the machine's speed)
    max_minutes: float | None = None
    label_smoothing: float = 0.0
    # auto: bf16-mixed where the hardware multiplies bf16 natively, else 32-true (precision.py; PRECISIONS there)
    precision: Literal["auto", "bf16-mixed", "32-true", "16-mixed", "bf16-true", "64-true"] = "auto"
    compile: bool = False  # torch.compile the model (GPUs: fewer kernel launches; the first steps compile)
    accumulate_grad_batches: int = 1
    tokens_per_step: int | None = None  # real target tokens per optimiser step, all ranks together (sets accumulation)
    val_every_n_epochs: int = 1
    val_every_n_batches: int | None = None  # validate every N training batches instead (runs shorter than an epoch)
    log_every_n_steps: int = 20
    average_last: int = 0  # >0: score the mean of the last N periodic checkpoints (Vaswani et al. §6.1)
    checkpoint_every_n_steps: int | None = None  # period of those checkpoints, in optimiser steps ...
    # ... or in minutes (opt-in: which weights are averaged then depends on the machine's speed)
    checkpoint_every_minutes: float | None = None
    resume_every_n_steps: int | None = 500  # checkpoints/resume.ckpt for `attnrepro train --resume`, this often ...
    resume_every_minutes: float | None = None  # ... or this many minutes instead (either way the scores are the same)

    def validate(self) -> None:
        """Checks across keys, run once the whole config is loaded (config.validate)."""
        from ..common.config import ConfigError

        if self.average_last > 0 and not (self.checkpoint_every_n_steps or self.checkpoint_every_minutes):
            raise ConfigError(f"train.average_last={self.average_last} needs train.checkpoint_every_n_steps "
                              "(the period of the checkpoints it averages)")
        if not (self.resume_every_n_steps or self.resume_every_minutes):
            raise ConfigError("give train.resume_every_n_steps (or train.resume_every_minutes): "
                              "the period of checkpoints/resume.ckpt")


@dataclass
class DecodeConfig(ABC):
    """Beam search's settings, one set of keys for every task: `common.beam.beam_search(model, src, decode)`.
    Each task's subclass sets its defaults and how long an output may be (`max_tokens`)."""

    beam: int = 5  # 1: greedy
    length_penalty: float = 1.0  # alpha of ((5 + |y|) / 6) ** alpha (Wu et al. 2016); 0 ranks by log-probability
    min_len: int = 1  # tokens before </s> at least (fairseq's --min-len); 0 lets an output be empty
    batch_size: int = 64  # inputs decoded together

    @abstractmethod
    def max_tokens(self, src_len: torch.Tensor) -> torch.Tensor:
        """The most tokens each output may have, from its input's length (B,) (0 for an input without one)."""
