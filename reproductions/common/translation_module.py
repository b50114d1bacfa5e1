"""The LightningModule shared by every translation reproduction: loss, logging, optimiser, schedule.

All the maths lives in the plain `nn.Module` a reproduction's `build()` returns; this class only calls
it, so RNNsearch, RNNencdec and the Transformer train under exactly the same loop.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from .config import to_dict
from .data.batching import reshuffle
from .data.vocab import PAD_ID, Vocab
from .optim import configure_optimizers

CHECKPOINT_FORMAT = 1


class TranslationModule(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, cfg, reproduction: str, src_vocab: Vocab, tgt_vocab: Vocab):
        super().__init__()
        self.model, self.cfg, self.reproduction = model, cfg, reproduction
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.tokens_seen = 0  # target tokens trained on, all ranks together
        self._val_sums: list[torch.Tensor] = []

    def _loss_sum(self, batch: dict, label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _ = self.model(batch["src"], batch["tgt_in"])  # (B, T, V)
        target = batch["tgt_out"]  # (B, T)
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(),
            target.flatten(),
            ignore_index=PAD_ID,
            label_smoothing=label_smoothing,
            reduction="sum",
        )
        return loss, (target != PAD_ID).sum()

    def on_train_epoch_start(self) -> None:
        reshuffle(self.trainer, self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss_sum, ntok = self._loss_sum(batch, self.cfg.train.label_smoothing)
        total_ntok = ntok
        if self.trainer.world_size > 1:  # per-token mean over all ranks' tokens (DDP then averages gradients)
            total_ntok = self.all_gather(ntok).sum()
        loss = loss_sum * self.trainer.world_size / total_ntok
        self.tokens_seen += int(total_ntok)
        self.log("train/loss", loss_sum / ntok, prog_bar=True, batch_size=int(ntok))
        self.log("train/tokens", float(self.tokens_seen), batch_size=1)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss_sum, ntok = self._loss_sum(batch, 0.0)  # perplexity of the true distribution, no smoothing
        self._val_sums.append(torch.stack([loss_sum.detach(), ntok.to(loss_sum.dtype)]))

    def on_validation_epoch_end(self) -> None:
        if not self._val_sums:
            return
        loss_sum, ntok = torch.stack(self._val_sums).sum(0)
        self._val_sums.clear()
        loss = loss_sum / ntok
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/ppl", torch.exp(loss), sync_dist=True)

    def configure_optimizers(self):
        return configure_optimizers(self.cfg.optim, self.model.parameters())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["attnrepro"] = {
            "format": CHECKPOINT_FORMAT,
            "reproduction": self.reproduction,
            "config": to_dict(self.cfg),
            "src_vocab": self.src_vocab.to_json(),
            "tgt_vocab": self.tgt_vocab.to_json(),
            "tokens_seen": self.tokens_seen,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tokens_seen = checkpoint.get("attnrepro", {}).get("tokens_seen", 0)
