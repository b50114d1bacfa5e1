"""The translation data pipeline as a LightningDataModule: splits, vocabularies, token-budget batches."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from ..translation_config import DataConfig
from .batching import TokenBudgetBatchSampler, collate_pairs
from .translation import checksums, load_split
from .vocab import Vocab, build_vocabs


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, idx: int) -> dict:
        return self.examples[idx]


def encode_pairs(dataset, src_vocab: Vocab, tgt_vocab: Vocab) -> list[dict]:
    """`datasets.Dataset` of raw pairs -> examples with token ids and their position in the split."""
    import datasets

    datasets.disable_progress_bars()  # encoding takes a second; Lightning's bar is the one to watch
    encoded = dataset.map(
        lambda rows: {"src_ids": src_vocab.encode_batch(rows["src"]), "tgt_ids": tgt_vocab.encode_batch(rows["tgt"])},
        batched=True,
        batch_size=2000,
    )
    return [
        {"src_ids": s, "tgt_ids": t, "index": i}
        for i, (s, t) in enumerate(zip(encoded["src_ids"], encoded["tgt_ids"]))
    ]


class TranslationDataModule(pl.LightningDataModule):
    def __init__(self, cfg: DataConfig, seed: int, cache_dir: Path):
        super().__init__()
        self.cfg, self.seed, self.cache_dir = cfg, seed, Path(cache_dir)
        self.src_vocab: Vocab | None = None
        self.tgt_vocab: Vocab | None = None
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches done), set when a run resumes

    def load(self, vocabs: tuple[Vocab, Vocab] | None = None) -> None:
        """Read and encode the training and validation splits; train (or reuse) the vocabularies."""
        cfg = self.cfg
        train = load_split(cfg.dataset, cfg.pair, cfg.train_split, cfg.train_limit)
        val = load_split(cfg.dataset, cfg.pair, cfg.val_split, cfg.eval_limit)
        self.src_vocab, self.tgt_vocab = vocabs or build_vocabs(
            train, cfg.vocab, cfg.vocab_size, cfg.joint_vocab, self.cache_dir
        )
        examples = encode_pairs(train, self.src_vocab, self.tgt_vocab)
        kept = [e for e in examples if 0 < len(e["src_ids"]) <= cfg.max_len and 0 < len(e["tgt_ids"]) <= cfg.max_len]
        self.train_set = ListDataset(kept)
        self.val_set = ListDataset(encode_pairs(val, self.src_vocab, self.tgt_vocab))
        self.dropped = len(examples) - len(kept)
        self.checksums = checksums(cfg.dataset, cfg.pair, [cfg.train_split, cfg.val_split])

    @staticmethod
    def _lengths(dataset: ListDataset) -> list[int]:
        return [max(len(e["src_ids"]), len(e["tgt_ids"])) + 1 for e in dataset.examples]

    def _loader(self, dataset: ListDataset, shuffle: bool) -> torch.utils.data.DataLoader:
        trainer = self.trainer
        sampler = TokenBudgetBatchSampler(
            self._lengths(dataset),
            max_tokens=self.cfg.max_tokens if self.cfg.batch_sentences is None else None,
            batch_sentences=self.cfg.batch_sentences,
            bucket_batches=self.cfg.bucket_batches,
            shuffle=shuffle,
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )
        if shuffle and self.resume_at is not None:
            sampler.resume(*self.resume_at)
            self.resume_at = None
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_pairs,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        # Validation loss is a sum over tokens, so every rank may see all of it in a fixed order.
        return self._loader(self.val_set, shuffle=False)
