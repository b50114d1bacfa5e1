"""The LightningModule shared by every translation reproduction: loss, logging, optimiser, schedule.

All the maths lives in the plain `nn.Module` a reproduction's `build()` returns; this class only calls
it, so RNNsearch, RNNencdec and the Transformer train under exactly the same loop.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from .config import to_dict
from .data.vocab import PAD_ID, Vocab

CHECKPOINT_FORMAT = 1


def inverse_sqrt(step: int, warmup: int) -> float:
    """Vaswani et al. 2017 (arXiv:1706.03762v7), Eq. 3 without its d_model^-0.5 factor, which is `optim.lr`:
    lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5). LambdaLR counts from 0; the paper from 1."""
    step, warmup = step + 1, max(warmup, 1)
    return min(step**-0.5, step * warmup**-1.5)


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
        # Lightning sets the epoch on a DataLoader's sampler, not on a batch_sampler like ours: without
        # this every epoch would see the same batches in the same order.
        sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.current_epoch)

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
        opt = self.cfg.optim
        params = self.model.parameters()
        if opt.name == "adadelta":  # Bahdanau et al. App. B.2: eps 1e-6, rho 0.95
            optimizer = torch.optim.Adadelta(params, lr=opt.lr, rho=opt.rho, eps=opt.eps, weight_decay=opt.weight_decay)
        else:
            optimizer = torch.optim.Adam(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                                         weight_decay=opt.weight_decay)
        if opt.schedule == "inverse_sqrt":
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: inverse_sqrt(step, opt.warmup_steps))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if opt.schedule == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=opt.plateau_factor, patience=opt.plateau_patience
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
        return optimizer

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
