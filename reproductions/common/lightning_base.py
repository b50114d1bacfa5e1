"""What every reproduction's LightningModule shares: validation loss per target token, the optimiser
from the config, the attnrepro section of checkpoints (config, vocabularies, tokens seen) and exact
resumption (`ResumableMixin`). Subclasses add the loss and `_checkpoint_extra()`."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from .config import to_dict
from .optim import configure_optimizers
from .resume import ResumableMixin

CHECKPOINT_FORMAT = 1


class AttnreproModule(ResumableMixin, pl.LightningModule):
    task = "translation"

    def __init__(self, model: torch.nn.Module, cfg, reproduction: str):
        super().__init__()
        self.model, self.cfg, self.reproduction = model, cfg, reproduction
        self.tokens_seen = 0  # target tokens trained on, all ranks together
        self._val_sums: list[torch.Tensor] = []

    def _add_validation(self, nll_sum: torch.Tensor, tokens: torch.Tensor) -> None:
        self._val_sums.append(torch.stack([nll_sum.detach(), tokens.to(nll_sum.dtype)]))

    def on_validation_epoch_end(self) -> None:
        if not self._val_sums:
            return
        nll_sum, tokens = torch.stack(self._val_sums).sum(0)
        self._val_sums.clear()
        loss = nll_sum / tokens
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/ppl", torch.exp(loss), sync_dist=True)

    def configure_optimizers(self):
        return configure_optimizers(self.cfg.optim, self.model.parameters())

    def _checkpoint_extra(self) -> dict:
        return {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self._save_resume_state(checkpoint)
        checkpoint["attnrepro"] = {
            "format": CHECKPOINT_FORMAT,
            "task": self.task,
            "reproduction": self.reproduction,
            "config": to_dict(self.cfg),
            "tokens_seen": self.tokens_seen,
            **self._checkpoint_extra(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._load_resume_state(checkpoint)
        self.tokens_seen = checkpoint.get("attnrepro", {}).get("tokens_seen", 0)
