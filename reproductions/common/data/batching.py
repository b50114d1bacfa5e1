"""Length-bucketed batches under a token budget, the same on every rank and every resume.

The pairs are shuffled with (seed, epoch), cut into chunks of `bucket_batches` batches' worth of
pairs, each chunk sorted by length and split into batches (Bahdanau et al., App. B.2: "retrieved 1600
sentence pairs, sorted them according to the lengths and split them into 20 minibatches"); the
batches are then shuffled. Under DDP each rank takes every world_size-th batch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch

from .vocab import BOS_ID, EOS_ID, PAD_ID


def reshuffle(trainer, epoch: int) -> None:
    """Call at every training epoch start. Lightning sets the epoch on a DataLoader's sampler, not on a
    batch_sampler like ours: without this every epoch would see the same batches in the same order."""
    sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


class TokenBudgetBatchSampler(torch.utils.data.Sampler):
    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int | None = None,
        batch_sentences: int | None = None,
        bucket_batches: int = 20,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if (max_tokens is None) == (batch_sentences is None):
            raise ValueError("give exactly one of max_tokens and batch_sentences")
        self.lengths = list(lengths)
        self.max_tokens, self.batch_sentences = max_tokens, batch_sentences
        self.bucket_batches, self.shuffle, self.seed = bucket_batches, shuffle, seed
        self.rank, self.world_size = rank, world_size
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
            batches = self._epoch_batches(0)
            if len(batches) < self.world_size:
                raise ValueError(f"{len(batches)} batches cannot be shared by {self.world_size} processes; "
                                 "use more data or a smaller batch")
            self._epoch_length = len(batches) // self.world_size
        return self._epoch_length

    def _split(self, indices: list[int]) -> list[list[int]]:
        batches, batch, longest = [], [], 0
        for idx in indices:
            longest_if_added = max(longest, self.lengths[idx])
            full = (
                len(batch) == self.batch_sentences
                if self.batch_sentences
                else longest_if_added * (len(batch) + 1) > self.max_tokens
            )
            if batch and full:
                batches.append(batch)
                batch, longest_if_added = [], self.lengths[idx]
            batch.append(idx)
            longest = longest_if_added
        if batch:
            batches.append(batch)
        return batches

    def batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch."""
        if not self.shuffle:  # evaluation: sorted by length for speed; callers restore the order
            return self._split(sorted(range(len(self.lengths)), key=lambda i: self.lengths[i]))
        # Every epoch and every rank must take the same number of steps: Lightning sizes the epoch once
        # (validation runs when that count is reached) and DDP waits forever for a missing step. Batch
        # counts under a token budget vary a little with the order, so every epoch is trimmed or topped
        # up (with its own first batches) to epoch 0's count.
        needed = self.epoch_length() * self.world_size
        batches = self._epoch_batches(self.epoch)
        batches = (batches + batches[: max(0, needed - len(batches))])[:needed]
        return batches[self.rank :: self.world_size]

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 1_000_003 + epoch)
        rng.shuffle(order)
        mean_len = max(1, sum(self.lengths) // max(1, len(self.lengths)))
        per_batch = self.batch_sentences or max(1, self.max_tokens // mean_len)
        chunk = per_batch * self.bucket_batches
        batches = []
        for start in range(0, len(order), chunk):
            batches += self._split(sorted(order[start : start + chunk], key=lambda i: self.lengths[i]))
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches, self._skip = self.batches()[self._skip :], 0
        return iter(batches)

    def __len__(self) -> int:
        return len(self.batches())


def collate_pairs(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Pad token-id pairs into a batch: src (B, S), tgt_in = <s> y (B, T), tgt_out = y </s> (B, T)."""
    src_len = max(len(e["src_ids"]) for e in examples) + 1
    tgt_len = max(len(e["tgt_ids"]) for e in examples) + 1
    batch_size = len(examples)
    src = torch.full((batch_size, src_len), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((batch_size, tgt_len), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((batch_size, tgt_len), PAD_ID, dtype=torch.long)
    for row, e in enumerate(examples):
        s, t = e["src_ids"], e["tgt_ids"]
        src[row, : len(s) + 1] = torch.tensor(s + [EOS_ID])
        tgt_in[row, : len(t) + 1] = torch.tensor([BOS_ID] + t)
        tgt_out[row, : len(t) + 1] = torch.tensor(t + [EOS_ID])
    return {
        "src": src,
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "index": torch.tensor([e["index"] for e in examples]),
    }
