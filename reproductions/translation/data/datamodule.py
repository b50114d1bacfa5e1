"""The translation data pipeline as a LightningDataModule: splits, vocabularies, token-budget batches.

The training split goes through the token cache (`cache.py`): vocabularies trained on a stream, pairs
tokenised and length-filtered once into array files that are read pair by pair, never loaded; batches built
from the lengths alone. Its memory does not grow with the corpus, and under DDP one process builds it while
the others wait, then read it.
Validation splits are small (a few thousand pairs) and are kept in memory.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from ...common.data.batching import BatchBudgetError, TokenBudgetBatchSampler, accumulation_for, collate_pairs
from ...common.data.vocab import Vocab, vocabs_for_corpus
from ...common.rundir import is_rank_zero
from ..config import DataConfig
from .cache import TokenCache, ensure_cache
from .corpus import training_bitext
from .files import checksums, load_split


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, idx: int) -> dict:
        return self.examples[idx]

    def lengths(self) -> np.ndarray:
        return np.array([max(len(e["src_ids"]), len(e["tgt_ids"])) + 1 for e in self.examples], dtype=np.int32)


class CachedPairs(torch.utils.data.Dataset):
    """The training pairs of a token cache; `index` is the position among the kept pairs."""

    def __init__(self, cache: TokenCache):
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, idx: int) -> dict:
        src, tgt = self.cache.pair(idx)
        return {"src_ids": src, "tgt_ids": tgt, "index": idx}

    def head(self, n: int) -> list[dict]:
        return [self[i] for i in range(min(n, len(self)))]

    def lengths(self) -> np.ndarray:
        """What a pair costs in a padded batch: max(src, tgt) tokens + </s> (or <s>)."""
        lengths = np.maximum(self.cache.lengths("src"), self.cache.lengths("tgt"))  # uint16: 2 bytes per pair
        lengths += 1
        return lengths


def encode_pairs(dataset, src_vocab: Vocab, tgt_vocab: Vocab) -> list[dict]:
    """`datasets.Dataset` of raw pairs -> examples with token ids and their position in the split."""
    src_ids, tgt_ids = src_vocab.encode_batch(dataset["src"]), tgt_vocab.encode_batch(dataset["tgt"])
    return [{"src_ids": s, "tgt_ids": t, "index": i} for i, (s, t) in enumerate(zip(src_ids, tgt_ids))]


@dataclass(frozen=True)
class StepBudget:
    """How many batches one optimiser step accumulates, and the real tokens it then sees (all ranks)."""

    accumulate: int
    world_size: int
    src_tokens: float
    tgt_tokens: float

    def describe(self) -> str:
        return (f"effective batch: {self.accumulate} accumulated x {self.world_size} process(es) = "
                f"~{self.src_tokens:.0f} source and ~{self.tgt_tokens:.0f} target tokens per optimiser step")

    def as_dict(self) -> dict:
        return {"accumulate_grad_batches": self.accumulate, "processes": self.world_size,
                "planned_src_tokens_per_step": round(self.src_tokens),
                "planned_tgt_tokens_per_step": round(self.tgt_tokens)}


class TranslationDataModule(pl.LightningDataModule):
    def __init__(self, cfg: DataConfig, seed: int, cache_dir: Path):
        super().__init__()
        self.cfg, self.seed, self.cache_dir = cfg, seed, Path(cache_dir)
        self.src_vocab: Vocab | None = None
        self.tgt_vocab: Vocab | None = None
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches done), set when a run resumes

    def load(self, vocabs: tuple[Vocab, Vocab] | None = None) -> None:
        """Train (or reuse) the vocabularies, build (or map) the training token cache, encode validation.

        Safe to call in every process at once: the first one builds the cache, the others wait and map it."""
        cfg = self.cfg
        bitext = training_bitext(cfg, self.cache_dir)
        self.src_vocab, self.tgt_vocab = vocabs or vocabs_for_corpus(
            bitext.chunks, bitext.key, cfg.vocab, cfg.vocab_size, cfg.joint_vocab, cfg.vocab_every, self.cache_dir
        )
        self.train_set = CachedPairs(ensure_cache(bitext, self.src_vocab, self.tgt_vocab, cfg.max_len, self.cache_dir))
        val = load_split(cfg.dataset, cfg.pair, cfg.val_split, cfg.eval_limit)
        self.val_set = ListDataset(encode_pairs(val, self.src_vocab, self.tgt_vocab))
        self.dropped = self.train_set.cache.meta["dropped"]
        self.checksums = {**bitext.provenance, **checksums(cfg.dataset, cfg.pair, [cfg.val_split])}

    def prepare_data(self) -> None:
        # Lightning calls this on local rank 0 of each node: build there if load() has not run yet.
        if self.src_vocab is None:
            self.load()

    def setup(self, stage: str | None = None) -> None:
        if self.src_vocab is None:
            self.load()

    def _sampler(self, dataset, shuffle: bool, rank: int, world_size: int) -> TokenBudgetBatchSampler:
        return TokenBudgetBatchSampler(
            dataset.lengths(),
            max_tokens=self.cfg.max_tokens if self.cfg.batch_sentences is None else None,
            batch_sentences=self.cfg.batch_sentences,
            bucket_batches=self.cfg.bucket_batches,
            shuffle=shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            global_batch=shuffle,  # batch_sentences counts one step's sentences on all ranks (App. B.2: 80)
        )

    def step_budget(self, tokens_per_step: int | None, world_size: int, accumulate: int = 1) -> StepBudget:
        """The accumulation that gives `tokens_per_step` real target tokens per step on `world_size` processes
        (the configured `accumulate` when it is None), from the mean real tokens of epoch 0's batches."""
        sampler = self._sampler(self.train_set, True, 0, world_size)
        src_len, tgt_len = (self.train_set.cache.lengths(side) for side in ("src", "tgt"))  # uint16, mapped
        batches = sampler._rank_batches()  # rank 0's share; the batches are alike on every rank
        # real tokens of a batch: the pairs' tokens + </s> each (source) or the shifted target's </s> (target)
        src_mean = float(np.mean([src_len[b].sum(dtype=np.int64) + len(b) for b in batches]))
        tgt_mean = float(np.mean([tgt_len[b].sum(dtype=np.int64) + len(b) for b in batches]))
        if tokens_per_step is not None:
            accumulate = accumulation_for(tokens_per_step, tgt_mean, world_size, self.cfg.max_tokens)
        rounds = accumulate * world_size
        return StepBudget(accumulate, world_size, src_mean * rounds, tgt_mean * rounds)

    def _loader(self, dataset, shuffle: bool) -> torch.utils.data.DataLoader:
        trainer = self.trainer
        sampler = self._sampler(dataset, shuffle, trainer.global_rank if trainer else 0,
                                trainer.world_size if trainer else 1)
        if shuffle and self.resume_at is not None:
            sampler.resume(*self.resume_at)
            self.resume_at = None
        workers = self.cfg.num_workers
        on_cuda = trainer is not None and trainer.strategy.root_device.type == "cuda"
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_pairs,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,  # a few batches ready while the GPU works
            pin_memory=on_cuda,  # page-locked host memory: faster, asynchronous copies to the GPU
        )

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        # Validation loss is a sum over tokens, so every rank may see all of it in a fixed order.
        return self._loader(self.val_set, shuffle=False)


def apply_step_budget(trainer, data, train_cfg) -> StepBudget | None:
    """Set the Trainer's gradient accumulation from `train.tokens_per_step` (or keep the configured one) for
    its number of processes, and print the effective batch; None for data modules without token batches."""
    if not hasattr(data, "step_budget"):
        return None
    if train_cfg.tokens_per_step is not None and train_cfg.accumulate_grad_batches != 1:
        raise BatchBudgetError(f"train.tokens_per_step={train_cfg.tokens_per_step} sets the accumulation itself; "
                               f"remove train.accumulate_grad_batches={train_cfg.accumulate_grad_batches}")
    budget = data.step_budget(train_cfg.tokens_per_step, trainer.world_size, train_cfg.accumulate_grad_batches)
    trainer.accumulate_grad_batches = budget.accumulate
    if is_rank_zero():
        print(f"attnrepro: {budget.describe()}", file=sys.stderr)
    return budget
