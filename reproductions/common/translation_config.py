"""Config sections shared by every translation reproduction (data, optimiser, training, decoding).

Each reproduction adds its own `model` section; see `reproductions/common/rnn.py` and the paper folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ALL_MULTI30K_TESTS = ["test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr"]


@dataclass
class DataConfig:
    dataset: Literal["multi30k", "wmt14"] = "multi30k"
    pair: str = "en-de"  # src-tgt, any two of en/de/fr/cs for Multi30k
    train_split: str = "train"
    val_split: str = "val"
    test_splits: list[str] = field(default_factory=lambda: list(ALL_MULTI30K_TESTS))  # absent ones are skipped
    train_limit: int | None = None  # keep the first N training pairs (tests and smoke runs)
    eval_limit: int | None = None  # keep the first N pairs of the validation and test splits
    max_len: int = 50  # training pairs with a side longer than this many tokens are dropped
    vocab: Literal["bpe", "word"] = "bpe"  # joint subwords, or the paper's per-language word shortlist
    vocab_size: int = 8000
    joint_vocab: bool = True  # one vocabulary for both languages (subwords); False: one per language
    max_tokens: int | None = 4000  # token budget per batch (max(src, tgt) length x sentences)
    batch_sentences: int | None = None  # fixed number of sentences per batch instead (paper: 80)
    bucket_batches: int = 20  # sort this many batches' worth of pairs by length at a time (paper §4.2)
    num_workers: int = 0  # DataLoader worker processes per rank (batches of the token cache are cheap to build)
    source: str = "hub"  # WMT14 train: 'hub' (HF wmt/wmt14), or a folder of its Parquet shards or of train.SRC/TGT
    hub_revision: str | None = None  # commit of wmt/wmt14 on the hub (None: main; runs record the commit used)
    vocab_every: int = 1  # train the vocabulary on every N-th training pair (1: all of them)


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
        from .config import ConfigError

        if self.average_last > 0 and not (self.checkpoint_every_n_steps or self.checkpoint_every_minutes):
            raise ConfigError(f"train.average_last={self.average_last} needs train.checkpoint_every_n_steps "
                              "(the period of the checkpoints it averages)")
        if not (self.resume_every_n_steps or self.resume_every_minutes):
            raise ConfigError("give train.resume_every_n_steps (or train.resume_every_minutes): "
                              "the period of checkpoints/resume.ckpt")


@dataclass
class DecodeConfig:
    beam: int = 5  # 1: greedy
    length_penalty: float = 1.0  # alpha of ((5 + |y|) / 6) ** alpha (Wu et al. 2016); 0: none
    max_len_a: float = 1.5  # hypotheses stop at a * source length + b tokens
    max_len_b: int = 10
    min_len: int = 1  # tokens before </s> at least (fairseq's --min-len); 0 lets a hypothesis be empty
    batch_size: int = 64  # sentences decoded together
    length_buckets: list[int] = field(default_factory=lambda: [0, 10, 15, 20, 25, 30, 40, 50])


@dataclass
class TranslationConfig:
    """The shared sections; each reproduction subclasses it and adds its typed `model` section."""

    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
