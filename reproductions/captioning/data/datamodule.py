"""The captioning data pipeline as a LightningDataModule: the caption vocabulary, cached CNN features and
(image, caption) examples in length-bucketed batches (Xu et al. §5.2)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytorch_lightning as pl
import torch

from ...common.data.batching import TokenBudgetBatchSampler
from ...common.data.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK, Vocab
from ...common.io import atomic_write_text
from ..encoders import FeatureStore, cached_features, feature_device, require_encoder
from .captions import CaptionSplit, checksums, load_captions

CAPTION_VOCAB_FORMAT = 2  # 2: whitespace pre-tokenization (1 split punctuation off Metaspace words)


def build_caption_vocab(captions: list[str], min_count: int, max_size: int, cache_dir: Path) -> Vocab:
    """Lower-cased words seen at least `min_count` times in the training captions (at most `max_size`
    entries, specials included); the rest map to <unk>. Cached by content like `build_vocabs`.

    The captions are already tokenized (Flickr8k's token file; Karpathy's `tokens`), so words are split on
    whitespace only, as in the authors' flickr8k.py (`cc.split()`): one target per word, and the per-word
    loss and words/s mean what they say."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    digest = hashlib.sha256("\n".join(captions).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "vocab" / f"captions-v{CAPTION_VOCAB_FORMAT}-{min_count}-{max_size}-{digest}.json"
    if path.exists():
        try:
            return Vocab.from_json(path.read_text())
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # no decoder: decoding joins words with spaces
    trainer = trainers.WordLevelTrainer(vocab_size=max_size, min_frequency=min_count, special_tokens=SPECIALS,
                                        show_progress=False)
    tokenizer.train_from_iterator(captions, trainer=trainer, length=len(captions))
    vocab = Vocab(tokenizer)
    atomic_write_text(path, vocab.to_json())
    return vocab


def split_features(cfg, split: CaptionSplit, cache_dir: Path, device: str | None = None) -> FeatureStore:
    """The split's annotation vectors from the feature cache (computed on `device`, default data.feature_device)."""
    data = cfg.data
    return cached_features(data.encoder, split.images, split.paths, cache_dir,
                           device=device or feature_device(data.feature_device), weights=data.encoder_weights,
                           num_workers=data.num_workers)


class CaptionDataset(torch.utils.data.Dataset):
    """One example per (image, reference caption)."""

    def __init__(self, split: CaptionSplit, features: FeatureStore, vocab: Vocab, max_len: int):
        rows = features.rows(split.images)
        self.features = features
        self.examples = []
        for row, captions in zip(rows, split.captions):
            for ids in vocab.encode_batch(captions):
                if ids:
                    self.examples.append((row, ids[:max_len]))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, idx: int) -> tuple[int, list[int]]:
        return self.examples[idx]

    def collate(self, items: list[tuple[int, list[int]]]) -> dict:
        rows = [row for row, _ in items]
        longest = max(len(ids) for _, ids in items) + 1
        captions_in = torch.full((len(items), longest), PAD_ID, dtype=torch.long)
        captions_out = torch.full((len(items), longest), PAD_ID, dtype=torch.long)
        for i, (_, ids) in enumerate(items):
            captions_in[i, : len(ids) + 1] = torch.tensor([BOS_ID] + ids)
            captions_out[i, : len(ids) + 1] = torch.tensor(ids + [EOS_ID])
        return {"features": self.features[rows], "captions_in": captions_in, "captions_out": captions_out}


class CaptionDataModule(pl.LightningDataModule):
    def __init__(self, cfg, seed: int, cache_dir: Path):
        super().__init__()
        self.cfg, self.seed, self.cache_dir = cfg, seed, Path(cache_dir)
        self.vocab: Vocab | None = None
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches done), set when a run resumes

    def load(self, vocab: Vocab | None = None) -> None:
        """Check what training needs (the encoder and its weights) before any work; read the training and
        validation splits, build (or reuse) the vocabulary, load or compute features. (Java, for scoring the
        test splits, is checked by `CaptioningTask.check_scoring` when scoring follows training.)"""
        data = self.cfg.data
        require_encoder(data.encoder, data.encoder_weights)
        train, val = load_captions(data, data.train_split), load_captions(data, data.val_split)
        self.vocab = vocab or build_caption_vocab(
            [c for caps in train.captions for c in caps], data.min_word_count, data.max_vocab, self.cache_dir
        )
        features = {"train": split_features(self.cfg, train, self.cache_dir),
                    "val": split_features(self.cfg, val, self.cache_dir)}
        self.train_set = CaptionDataset(train, features["train"], self.vocab, data.max_len)
        self.val_set = CaptionDataset(val, features["val"], self.vocab, data.max_len)
        # every validation image once with its references: val/bleu4 for model selection and early stopping
        self.val_images = (features["val"], features["val"].rows(val.images), val.captions)
        self.images = {"train": len(train), "val": len(val)}
        self.checksums = checksums(data)

    def _loader(self, dataset: CaptionDataset, shuffle: bool) -> torch.utils.data.DataLoader:
        # Xu et al. §5.2: minibatches of captions of (nearly) one length, which also saves padding.
        trainer = self.trainer
        sampler = TokenBudgetBatchSampler(
            [len(ids) + 1 for _, ids in dataset.examples], batch_sentences=self.cfg.data.batch_size,
            bucket_batches=20, shuffle=shuffle, seed=self.seed,
            rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1,
        )
        if shuffle and self.resume_at is not None:
            sampler.resume(*self.resume_at)
            self.resume_at = None
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=dataset.collate,
                                           num_workers=self.cfg.data.num_workers)

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False)
