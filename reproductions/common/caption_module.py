"""Captioning under Lightning: the data module (cached CNN features + caption ids) and the training loop
shared by Show and Tell and both Show, Attend and Tell variants.

The loss is the per-word negative log-likelihood, plus, for soft attention, lambda * Eq. 14 and, for hard
attention, the REINFORCE surrogate of Eq. 12 (both summed per caption and divided by the number of words,
like the likelihood, so lambda keeps the paper's weight relative to -log p(y|a)).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from .captioner import CaptionConfig, doubly_stochastic_penalty
from .data.batching import TokenBudgetBatchSampler
from .data.captions import CaptionSplit, checksums, load_captions
from .data.vocab import BOS_ID, EOS_ID, PAD_ID, Vocab, build_caption_vocab
from .encoders import FeatureStore, cached_features
from .lightning_base import AttnreproModule


def split_features(cfg: CaptionConfig, split: CaptionSplit, cache_dir: Path, device: str = "cpu") -> FeatureStore:
    return cached_features(cfg.data.encoder, split.images, split.paths, cache_dir, device=device)


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
    def __init__(self, cfg: CaptionConfig, seed: int, cache_dir: Path):
        super().__init__()
        self.cfg, self.seed, self.cache_dir = cfg, seed, Path(cache_dir)
        self.vocab: Vocab | None = None
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches done), set when a run resumes

    def load(self, vocab: Vocab | None = None) -> None:
        """Read the training and validation splits, build (or reuse) the vocabulary, load or compute features."""
        data = self.cfg.data
        train, val = load_captions(data, data.train_split), load_captions(data, data.val_split)
        self.vocab = vocab or build_caption_vocab(
            [c for caps in train.captions for c in caps], data.min_word_count, data.max_vocab, self.cache_dir
        )
        features = {name: split_features(self.cfg, split, self.cache_dir) for name, split in [("train", train),
                                                                                          ("val", val)]}
        self.train_set = CaptionDataset(train, features["train"], self.vocab, data.max_len)
        self.val_set = CaptionDataset(val, features["val"], self.vocab, data.max_len)
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


def reinforce_loss(log_lik: torch.Tensor, log_p_s: torch.Tensor, entropy: torch.Tensor, baseline: torch.Tensor,
                   reinforce: float, entropy_weight: float) -> torch.Tensor:
    """Xu et al. Eq. 12 as a surrogate to minimise, summed over captions. Per caption: log_lik = log p(y|s,a),
    log_p_s = log p(s|a) of the sampled locations, entropy = H[s]. Its gradient is
    -(lambda_r (log p(y|s,a) - b) d log p(s|a) + lambda_e d H[s]): samples that explain the caption better
    than the baseline b become more likely. (The d log p(y|s,a) term comes from the likelihood loss.)"""
    advantage = (log_lik - baseline).detach()
    return -(reinforce * advantage * log_p_s + entropy_weight * entropy).sum()


def update_baseline(baseline: torch.Tensor, log_lik: torch.Tensor, decay: float, first: bool) -> torch.Tensor:
    """b_k = decay * b_{k-1} + (1 - decay) * log p(y|s_k,a) (§4.1), over a batch's mean; the first batch sets b."""
    mean = log_lik.detach().mean()
    return mean if first else decay * baseline + (1.0 - decay) * mean


class CaptionModule(AttnreproModule):
    task = "captioning"

    def __init__(self, model: torch.nn.Module, cfg: CaptionConfig, reproduction: str, vocab: Vocab):
        super().__init__(model, cfg, reproduction)
        self.vocab = vocab
        self.register_buffer("reward_baseline", torch.zeros(()))
        self.register_buffer("baseline_steps", torch.zeros((), dtype=torch.long))

    def _loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """(loss sum, nll sum, words) of a batch, and the parts to log."""
        logits, extras = self.model(batch["features"], batch["captions_in"])
        target = batch["captions_out"]
        mask = target != PAD_ID
        nll = F.cross_entropy(logits.transpose(1, 2).float(), target, ignore_index=PAD_ID, reduction="none").sum(1)
        loss = nll.sum()
        parts, lam = {}, self.cfg.loss
        if self.model.context == "soft" and lam.doubly_stochastic > 0:
            penalty = doubly_stochastic_penalty(extras["alpha"], mask).sum()
            loss = loss + lam.doubly_stochastic * penalty
            parts["doubly_stochastic"] = penalty / mask.size(0)
        if self.model.context == "hard" and self.training:
            sampled = mask & extras["sampled"]
            log_lik = -nll
            log_p_s = (extras["log_p_s"] * sampled).sum(1)
            entropy = (extras["entropy"] * mask).sum(1)
            loss = loss + reinforce_loss(log_lik, log_p_s, entropy, self.reward_baseline, lam.reinforce, lam.entropy)
            self.reward_baseline = update_baseline(self.reward_baseline, log_lik, lam.baseline_decay,
                                                   first=bool(self.baseline_steps == 0))
            self.baseline_steps += 1
            parts.update({"reward_baseline": self.reward_baseline, "attention_entropy": entropy.sum() / mask.sum()})
        return loss, nll.sum(), mask.sum(), parts

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self._count_batch()
        loss, nll, words, parts = self._loss(batch)
        self.tokens_seen += int(words) * self.trainer.world_size
        self.log("train/loss", nll / words, prog_bar=True, batch_size=int(words))
        for key, value in parts.items():
            self.log(f"train/{key}", value, batch_size=int(words))
        return loss / words

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, nll, words, _ = self._loss(batch)
        self._add_validation(nll, words)

    def _checkpoint_extra(self) -> dict:
        return {"vocab": self.vocab.to_json()}
