"""Length-bucketed batches under a token budget, the same on every rank and every resume.

The pairs are shuffled with (seed, epoch), cut into chunks of `bucket_batches` batches' worth of
pairs, each chunk sorted by length and split into batches (Bahdanau et al., App. B.2: "retrieved 1600
sentence pairs, sorted them according to the lengths and split them into 20 minibatches"); the
batches are then shuffled. Under DDP each rank takes every world_size-th batch, or, with
`global_batch`, its share of every batch (so that 80 sentences per step stay 80 on any number of GPUs).

Batches are built from the lengths alone, as numpy arrays: an epoch of 40M pairs costs a few hundred MB
and a few seconds, never a Python object per pair.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..errors import AttnreproError
from .vocab import BOS_ID, EOS_ID, PAD_ID


class BatchBudgetError(AttnreproError):
    """The requested tokens per step cannot be reached with this batch size and number of processes."""


def reshuffle(trainer, epoch: int) -> None:
    """Call at every training epoch start. Lightning sets the epoch on a DataLoader's sampler, not on a
    batch_sampler like ours: without this every epoch would see the same batches in the same order."""
    sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


class TokenBudgetBatchSampler(torch.utils.data.Sampler):
    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        max_tokens: int | None = None,
        batch_sentences: int | None = None,
        bucket_batches: int = 20,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        global_batch: bool = False,
    ):
        if (max_tokens is None) == (batch_sentences is None):
            raise ValueError("give exactly one of max_tokens and batch_sentences")
        lengths = np.asarray(lengths)  # per pair: the padded length it costs (uint16 from the token cache)
        self.lengths = lengths if lengths.dtype.kind in "ui" else lengths.astype(np.int32)
        self.max_tokens, self.batch_sentences = max_tokens, batch_sentences
        self.bucket_batches, self.shuffle, self.seed = bucket_batches, shuffle, seed
        self.rank, self.world_size = rank, world_size
        # global_batch: batch_sentences counts the sentences of one step on all ranks together
        self.global_batch = global_batch and batch_sentences is not None and world_size > 1
        self.epoch = 0
        self._epoch_length: int | None = None  # batches per rank, fixed by epoch 0 (see batches())
        self._skip = 0  # batches of the next iteration already trained on (exact resumption)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        """Continue an interrupted run: `batches_done` batches of `epoch` were trained on before the
        checkpoint. The next iteration yields the rest of that epoch (or the next epoch when it was complete)."""
        if batches_done >= self.epoch_length():
            self.epoch, self._skip = epoch + 1, 0
        else:
            self.epoch, self._skip = epoch, batches_done

    def epoch_length(self) -> int:
        """Batches per rank in every epoch: epoch 0's count."""
        if self._epoch_length is None:
            if self.global_batch:
                if self.batch_sentences < self.world_size:
                    raise ValueError(f"batches of {self.batch_sentences} sentences cannot be shared by "
                                     f"{self.world_size} processes; use a larger batch or fewer processes")
                self._epoch_length = len(self._epoch_batches(0))
            else:
                batches = self._epoch_batches(0)
                if len(batches) < self.world_size:
                    raise ValueError(f"{len(batches)} batches cannot be shared by {self.world_size} processes; "
                                     "use more data or a smaller batch")
                self._epoch_length = len(batches) // self.world_size
        return self._epoch_length

    def _split(self, indices: np.ndarray) -> list[np.ndarray]:
        """Cut `indices`, sorted by ascending length, into batches: `batch_sentences` at a time, or greedily
        while (longest length) x (sentences) stays within `max_tokens` (a longer pair alone is a batch)."""
        n = len(indices)
        if self.batch_sentences:
            bounds = list(range(self.batch_sentences, n, self.batch_sentences))
            if self.global_batch and bounds and n - bounds[-1] < self.world_size:
                bounds.pop()  # a remnant too small to give every rank a sentence joins the batch before it
            return np.split(indices, bounds)
        lengths = self.lengths[indices]
        batches, start = [], 0
        while start < n:
            # ascending lengths: the batch [start, end) costs lengths[end-1] * (end - start)
            most = max(1, self.max_tokens // max(1, int(lengths[start])))
            window = lengths[start : start + most]
            fits = window * np.arange(1, len(window) + 1) <= self.max_tokens
            count = max(1, int(np.argmin(fits)) if not fits.all() else len(window))
            batches.append(indices[start : start + count])
            start += count
        return batches

    def batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch (as lists; iteration converts them one at a time)."""
        return [b.tolist() for b in self._rank_batches()]

    def _rank_batches(self) -> list[np.ndarray]:
        if not self.shuffle:  # evaluation: sorted by length for speed; callers restore the order
            return self._split(np.argsort(self.lengths, kind="stable"))
        # Every epoch and every rank must take the same number of steps: Lightning sizes the epoch once
        # (validation runs when that count is reached) and DDP waits forever for a missing step. Batch
        # counts under a token budget vary a little with the order, so every epoch is trimmed or topped
        # up (with its own first batches) to epoch 0's count.
        per_rank = self.epoch_length()
        needed = per_rank if self.global_batch else per_rank * self.world_size
        batches = self._epoch_batches(self.epoch)
        batches = (batches + batches[: max(0, needed - len(batches))])[:needed]
        if self.global_batch:
            return [b[self.rank :: self.world_size] for b in batches]
        return batches[self.rank :: self.world_size]

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed * 1_000_003 + epoch)
        n = len(self.lengths)
        order = rng.permutation(np.arange(n, dtype=np.int64 if n >= 2**31 else np.int32))
        mean_len = max(1, int(self.lengths.sum(dtype=np.int64)) // max(1, n))
        per_batch = self.batch_sentences or max(1, self.max_tokens // mean_len)
        chunk = per_batch * self.bucket_batches
        batches: list[np.ndarray] = []
        for start in range(0, n, chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            split = self._split(part)
            if self.global_batch and batches and len(split[0]) < self.world_size:  # a tiny last chunk
                batches[-1] = np.concatenate([batches[-1], split.pop(0)])
            batches += split
        permutation = rng.permutation(len(batches))
        return [batches[i] for i in permutation]

    def __iter__(self) -> Iterator[list[int]]:
        batches, self._skip = self._rank_batches()[self._skip :], 0
        return (b.tolist() for b in batches)

    def __len__(self) -> int:
        return len(self._rank_batches()) if not self.shuffle else self.epoch_length()


def accumulation_for(tokens_per_step: int, tgt_tokens_per_batch: float, world_size: int,
                     max_tokens: int | None = None, tolerance: float = 0.1) -> int:
    """Batches to accumulate so that one optimiser step sees `tokens_per_step` real target tokens (within
    `tolerance`) on `world_size` processes, each batch holding `tgt_tokens_per_batch` of them on average."""
    per_round = tgt_tokens_per_batch * world_size
    accumulate = max(1, round(tokens_per_step / per_round))
    reached = accumulate * per_round
    if abs(reached - tokens_per_step) <= tolerance * tokens_per_step:
        return accumulate
    rounds = math.ceil(tokens_per_step / per_round)  # the accumulation a batch no larger than now would need
    advice = (f"set data.max_tokens to about {int(max_tokens * tokens_per_step / (rounds * per_round))}"
              if max_tokens else "change the batch size")
    raise BatchBudgetError(
        f"train.tokens_per_step={tokens_per_step} cannot be reached within {tolerance:.0%} on {world_size} "
        f"process(es): a batch holds ~{tgt_tokens_per_batch:.0f} real target tokens, so the nearest is "
        f"{accumulate} accumulated x {world_size} = {reached:.0f} per step; {advice} "
        f"({rounds} accumulated), or use other devices/nodes"
    )


def collate_pairs(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Pad token-id pairs into a batch: src (B, S), tgt_in = <s> y (B, T), tgt_out = y </s> (B, T)."""
    src_len = max(len(e["src_ids"]) for e in examples) + 1
    tgt_len = max(len(e["tgt_ids"]) for e in examples) + 1
    batch_size = len(examples)
    src = torch.full((batch_size, src_len), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((batch_size, tgt_len), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((batch_size, tgt_len), PAD_ID, dtype=torch.long)
    for row, e in enumerate(examples):
        s, t = torch.as_tensor(np.asarray(e["src_ids"], dtype=np.int64)), torch.as_tensor(
            np.asarray(e["tgt_ids"], dtype=np.int64))
        src[row, : len(s)] = s
        src[row, len(s)] = EOS_ID
        tgt_in[row, 0] = BOS_ID
        tgt_in[row, 1 : len(t) + 1] = t
        tgt_out[row, : len(t)] = t
        tgt_out[row, len(t)] = EOS_ID
    return {
        "src": src,
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "index": torch.tensor([e["index"] for e in examples]),
    }
