"""Config sections of every translation reproduction: its data and decoding, with the optimiser and training
sections every task shares (`reproductions.common.sections`).

Each reproduction adds its own `model` section; see `reproductions/translation/rnn.py` and the paper folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..common.sections import DecodeConfig, OptimConfig, TrainConfig

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
class TranslationDecodeConfig(DecodeConfig):
    """The shared decoding keys (beam, length_penalty, min_len, batch_size) and a length limit that grows with
    the source's."""

    max_len_a: float = 1.5  # hypotheses stop at a * source length + b tokens
    max_len_b: int = 10
    # scoring, not decoding: BLEU is also reported per bucket of source length with these lower bounds
    length_buckets: list[int] = field(default_factory=lambda: [0, 10, 15, 20, 25, 30, 40, 50])

    def max_tokens(self, src_len):
        return (self.max_len_a * src_len + self.max_len_b).long()


@dataclass
class TranslationConfig:
    """The shared sections; each reproduction subclasses it and adds its typed `model` section."""

    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: TranslationDecodeConfig = field(default_factory=TranslationDecodeConfig)
